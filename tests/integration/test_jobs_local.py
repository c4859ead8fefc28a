"""The local jobs engine with an injected job function: real child processes, real SQLite, no pipeline.

Every wait is a bounded poll on a job's state; nothing asserts a duration.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.errors import JobQueueFull
from backend.jobs.local import LocalJobs
from backend.registry import ModelRegistry

FUNCTION = "tests.job_functions:scripted"
WAIT_S = 120


@pytest.fixture
def engines(make_settings: Any, tmp_path: Path):
    made: list[LocalJobs] = []

    def make(registry: ModelRegistry | None = None, **overrides: Any) -> LocalJobs:
        settings = make_settings(jobs_dir=tmp_path / "jobs", **overrides)
        engine = LocalJobs(settings, registry, function=FUNCTION, poll_s=0.2)
        made.append(engine)
        return engine

    yield make
    # no test leaves a job's process behind: cancel what is left, open every gate, wait for the running ones
    for engine in made:
        for record in engine.store.in_state("queued", "running"):
            engine.cancel(record.id)
        engine.shutdown()
    for name in ("gate-done", "gate-cancel", "gate-kill", "gate-orphan", "gate-queue"):
        (tmp_path / name).touch()
    if made:
        wait_for(lambda: not made[0].store.in_state("running"), "every job's process has ended")


def submit(engine: LocalJobs, **options: Any):
    return engine.submit(kind="animation", options={"size": 256, **options}, image=b"IMG",
                         audio=np.zeros(1600, dtype=np.float32), need_mb=100)


def result_bytes(engine: LocalJobs, record) -> bytes:
    return engine.open_result(record).read_bytes()


def wait_state(engine: LocalJobs, job_id: str, *states: str, timeout_s: float = WAIT_S):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        record = engine.get(job_id)
        if record is not None and record.state in states:
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {states}: {engine.get(job_id)}")


def wait_for(predicate, what: str, timeout_s: float = WAIT_S):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def test_a_job_runs_in_a_spawned_child_and_its_result_survives_a_restart(engines, tmp_path):
    engine = engines()
    gate = tmp_path / "gate-done"
    record = submit(engine, frames=4, alloc_mb=64, gate=str(gate))
    assert record.state == "queued" and len(record.id) >= 22
    running = wait_state(engine, record.id, "running")
    pid = wait_for(lambda: engine.get(record.id).runner_pid, "the job's pid is recorded")
    assert pid != os.getpid() and engine.get(record.id).progress["stage"] in ("face", "queued")
    gate.touch()
    done = wait_state(engine, record.id, "done")
    assert running.started_at is not None and done.finished_at >= done.started_at
    assert done.progress["percent"] == 100.0 and done.error is None
    assert done.facts["frames"] == 4 and done.facts["audio_samples"] == 1600
    assert done.facts["peak_mb"] >= 64  # the child's own peak: the allocation is in it
    folder = tmp_path / "jobs" / record.id
    assert sorted(p.name for p in folder.iterdir()) == ["result.mp4"]  # inputs gone, no .part
    assert result_bytes(engine, done) == b"IMG" * 4
    engine.shutdown()
    restarted = engines()  # a new worker on the same JOBS_DIR
    again = restarted.get(record.id)
    assert again.state == "done" and result_bytes(restarted, again) == b"IMG" * 4


def test_cancel_a_queued_job_at_once_and_a_running_one_at_its_next_step(engines, tmp_path):
    engine = engines()
    gate = tmp_path / "gate-cancel"
    first = submit(engine, gate=str(gate))
    second = submit(engine)
    wait_state(engine, first.id, "running")
    assert engine.get(second.id).state == "queued"  # one job at a time
    assert engine.cancel(second.id) == "cancelled"
    assert not (tmp_path / "jobs" / second.id).exists()
    assert engine.cancel(first.id) == "running"  # asked to stop
    assert engine.get(first.id).cancel_requested
    cancelled = wait_state(engine, first.id, "cancelled", "done", "failed")
    assert cancelled.state == "cancelled" and cancelled.error["code"] == "cancelled"
    assert list((tmp_path / "jobs" / first.id).iterdir()) == []  # nothing half-written left
    assert engine.cancel(first.id) == "cancelled"  # finished: the API answers 409
    assert engine.cancel("no-such-job") is None


def test_a_killed_child_leaves_the_job_failed_not_running(engines, tmp_path):
    engine = engines()
    gate = tmp_path / "gate-kill"
    record = submit(engine, gate=str(gate))
    pid = wait_for(lambda: engine.get(record.id).runner_pid, "the job's pid is recorded")
    os.kill(pid, signal.SIGKILL)
    failed = wait_state(engine, record.id, "failed", "done", "cancelled")
    assert failed.state == "failed" and "SIGKILL" in failed.error["message"]
    assert list((tmp_path / "jobs" / record.id).iterdir()) == []
    # the next job still runs
    follow = submit(engine, frames=1)
    assert wait_state(engine, follow.id, "done", "failed").state == "done"


def test_a_job_orphaned_by_its_worker_is_reaped_by_another(engines, tmp_path):
    import subprocess
    import sys

    import psutil

    engine = engines()
    engine.shutdown()  # this test plays the dead worker: only the store is used
    record = engine.store.create("orphan", kind="animation", function=FUNCTION, options={}, need_mb=1)
    assert engine.store.claim(record.id)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    engine.store.set_runner(record.id, child.pid, psutil.Process(child.pid).create_time())
    other = engines()  # another worker: it never watched this process
    assert other.reap() == []  # alive: left alone
    child.kill()
    child.wait()
    assert other.reap() == [record.id]
    failed = other.get(record.id)
    assert failed.state == "failed" and "without a result" in failed.error["message"]


def test_typed_failure_and_crash_are_reported_with_their_status(engines):
    engine = engines()
    typed = submit(engine, fail="typed")
    crash = submit(engine, fail="crash")
    typed_record = wait_state(engine, typed.id, "failed", "done")
    crash_record = wait_state(engine, crash.id, "failed", "done")
    assert typed_record.error["status"] == 422 and "no face" in typed_record.error["message"]
    assert crash_record.error["status"] == 500 and "scripted crash" in crash_record.error["message"]
    assert crash_record.facts["peak_mb"] > 0


def test_finished_jobs_expire_after_the_ttl(engines, tmp_path):
    engine = engines(job_ttl_s=60)
    record = submit(engine, frames=1)
    done = wait_state(engine, record.id, "done")
    assert engine.expire(now=done.finished_at + 30) == []
    assert engine.expire(now=done.finished_at + 61) == [record.id]
    assert engine.get(record.id) is None and not (tmp_path / "jobs" / record.id).exists()


def test_the_queue_is_bounded(engines, tmp_path):
    engine = engines(max_queued_jobs=1)
    gate = tmp_path / "gate-queue"
    first = submit(engine, gate=str(gate))
    wait_state(engine, first.id, "running")
    submit(engine)
    with pytest.raises(JobQueueFull):
        submit(engine)
    gate.touch()


def test_a_job_waits_while_loaded_models_leave_no_room(engines, registry_factory, tmp_path):
    from tests.fakes import fake_spec

    registry = registry_factory([fake_spec("held", 1)], free_mb=150)
    engine = engines(registry)
    with registry.acquire("held"):  # in use: cannot be evicted
        registry.reserve_job("other", 120)  # memory another job holds
        record = submit(engine, frames=1)
        for _ in range(3):
            engine.dispatch_once()
        assert engine.get(record.id).state == "queued"
        registry.reserve_job("other", 0)
    assert wait_state(engine, record.id, "done", "failed").state == "done"
