"""Where the budget check runs the server: a real memory cgroup here, the process-tree fallback, and v2 files."""
from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from scripts.budget import cgroup
from scripts.budget.cgroup import CgroupMeter, ProcessTreeMeter, make_meter

LIMIT_MB = 64

# A child that allocates `mb` of touched memory, reports it, then waits to be stopped.
HOLD = "import numpy, sys, time; a = numpy.ones({mb} * 131072); print('held', flush=True); time.sleep(60)"


def offered() -> CgroupMeter | ProcessTreeMeter:
    return make_meter(LIMIT_MB)


@pytest.fixture
def meter():
    made = offered()
    yield made
    made.remove()


def run_inside(meter: CgroupMeter | ProcessTreeMeter, mb: int) -> subprocess.Popen:
    proc = subprocess.Popen(meter.wrap([sys.executable, "-c", HOLD.format(mb=mb)]), stdout=subprocess.PIPE, text=True)
    meter.attach(proc.pid)
    return proc


def test_a_process_over_the_limit_is_oom_killed_and_counted(meter):
    if meter.kind == "process-tree":
        pytest.skip(f"no memory cgroup here: {meter.reason}")
    assert meter.path.name.startswith("budget-check-") and meter.limit_mb == LIMIT_MB
    with run_inside(meter, 2 * LIMIT_MB) as proc:
        assert proc.wait(timeout=30) == -9  # SIGKILL from the kernel, not a Python MemoryError
        assert proc.stdout.read() == ""
    assert meter.oom_kills() >= 1
    assert LIMIT_MB - 1 <= meter.kernel_peak_mb() <= LIMIT_MB  # swap off: it could not page out instead
    assert meter.pids() == []


def test_a_process_under_the_limit_is_measured_from_inside(meter):
    if meter.kind == "process-tree":
        pytest.skip(f"no memory cgroup here: {meter.reason}")
    with run_inside(meter, 32) as proc:
        try:
            assert proc.stdout.readline() == "held\n"
            assert meter.pids() == [proc.pid]  # the shell exec'd python: same pid, already inside
            reading = meter.read()
            assert 32 < reading.working_set_mb <= reading.usage_mb < LIMIT_MB
            assert 32 < reading.rss_mb < LIMIT_MB and reading.oom_kills == 0
        finally:
            meter.remove()  # stops what is inside (SIGKILL, reaped by psutil), then removes the group
        proc.wait(timeout=10)
    assert not psutil.pid_exists(proc.pid) and not meter.path.exists()


def test_the_fallback_sums_the_process_tree_and_stops_it():
    meter = make_meter(LIMIT_MB, use_cgroup=False)
    assert meter.kind == "process-tree" and "--no-cgroup given" in meter.describe()
    parent_code = (f"import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', {HOLD.format(mb=40)!r}]); "
                   + HOLD.format(mb=20))
    with subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True) as proc:
        meter.attach(proc.pid)
        try:
            assert proc.stdout.readline() == "held\n"
            deadline = time.monotonic() + 30
            while (reading := meter.read()).rss_mb < 60 and time.monotonic() < deadline:
                time.sleep(0.1)  # the child's 40 MB arrives after the parent's line
            assert len(meter.pids()) == 2
            assert reading.rss_mb >= 60 and 40 < reading.pss_mb <= reading.rss_mb
            assert reading.working_set_mb == reading.pss_mb and reading.oom_kills is None
            children = [psutil.Process(pid) for pid in meter.pids()]
        finally:
            meter.remove()
        assert not any(child.is_running() for child in children)
        proc.wait(timeout=10)


def test_cgroup_v2_files_are_read_and_written_as_the_kernel_names_them(tmp_path, monkeypatch):
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("cpu\n")
    monkeypatch.setattr(cgroup, "CGROUP_ROOT", tmp_path)
    meter = make_meter(300, name="budget-check-test")
    assert meter.kind == "cgroup-v2" and meter.path == tmp_path / "budget-check-test"
    assert (meter.path / "memory.max").read_text() == str(300 * 1024 * 1024)
    (meter.path / "memory.current").write_text(str(200 * 1024 * 1024))
    (meter.path / "memory.stat").write_text(f"anon 1\nfile 2\ninactive_file {50 * 1024 * 1024}\nactive_file 3\n")
    (meter.path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\n")
    (meter.path / "memory.peak").write_text(str(290 * 1024 * 1024))
    (meter.path / "cgroup.procs").write_text("")
    reading = meter.read()
    assert (reading.usage_mb, reading.working_set_mb, reading.oom_kills) == (200, 150, 2)
    assert meter.kernel_peak_mb() == 290 and meter.oom_kills() == 2
    assert meter.wrap(["gunicorn"])[-2:] == [str(meter.path / "cgroup.procs"), "gunicorn"]
    for name in ("memory.current", "memory.stat", "memory.events", "memory.peak", "cgroup.procs", "memory.max"):
        (meter.path / name).unlink()  # a real cgroupfs lets rmdir remove these itself
    meter.remove()
    assert not meter.path.exists()


def test_no_cgroup_at_all_falls_back_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroup, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(cgroup, "V1_ROOT", tmp_path / "memory")
    meter = make_meter(300)
    assert meter.kind == "process-tree" and meter.reason == "no cgroup v1 memory controller mounted"
    assert "nothing enforces the budget" in meter.describe()

