"""backend.memory.readings: the one place that reads and resets memory peaks."""
from __future__ import annotations

import logging

import numpy as np

from backend.memory import readings


def test_a_reset_peak_is_the_peak_of_what_came_after():
    readings.release_memory()
    assert readings.reset_peak_rss() is True
    before = readings.rss_mb()
    block = np.ones(64 * readings.MB // 8)  # 64 MB, touched
    del block
    readings.release_memory()
    peak = readings.peak_rss_mb()
    assert peak is not None and peak - before >= 60
    assert readings.reset_peak_rss() is True
    assert readings.peak_rss_mb() < peak - 50  # the mark went back down to what is resident now


def test_a_failed_reset_says_so_once_and_returns_false(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(readings, "_CLEAR_REFS", tmp_path / "no-such-dir" / "clear_refs")
    monkeypatch.setattr(readings, "_peak_reset_failure_logged", False)
    with caplog.at_level(logging.WARNING, logger="backend.memory.readings"):
        assert readings.reset_peak_rss() is False
        assert readings.reset_peak_rss() is False
    warnings = [r for r in caplog.records if "cannot reset the peak-RSS mark" in r.getMessage()]
    assert len(warnings) == 1


def test_without_a_peak_reset_the_registry_records_no_request_peak(registry_factory, monkeypatch, tmp_path):
    from tests.conftest import fake_spec

    monkeypatch.setattr(readings, "_CLEAR_REFS", tmp_path / "no-such-dir" / "clear_refs")
    registry = registry_factory([fake_spec("a", 20)])
    with registry.acquire("a") as pipe:
        pipe(None)
    row = next(r for r in registry.snapshot() if r["name"] == "a")
    assert row["request_peak_mb"] is None  # not the process's all-time high passed off as this request's
    assert row["peak_load_mb"] == row["measured_mb"]  # falls back to RSS after load


def test_service_memory_counts_pages_shared_with_a_forked_worker_once():
    """Issue 11: summed RSS counted the master's pages again in every worker (a restarted worker then
    saw the master's growth twice and refused a model that fitted); PSS splits them."""
    import os

    shared = np.ones(80 * readings.MB // 8)  # touched before the fork: shared with the child
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the "worker": holds the shared pages, allocates nothing of its own
        os.close(write_end)
        os.read(read_end, 1)
        os._exit(0)
    try:
        os.close(read_end)
        service = readings.ServiceMemory(root_pid=os.getpid())
        service.cgroup = None  # what a machine without a memory-limited cgroup reads
        rss_sum = readings.rss_mb() + readings.rss_mb(pid)
        assert service.source == "process-tree-pss"
        # the 80 MB are in both processes' RSS, but only once in what the service really uses
        assert 80 <= service.used_mb() < rss_sum - 60
    finally:
        os.write(write_end, b"x")
        os.close(write_end)
        os.waitpid(pid, 0)
        del shared
