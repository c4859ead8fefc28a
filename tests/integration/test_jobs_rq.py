"""The rq backend against a real redis-server and a separate worker process (python -m backend.jobs.worker).

The job function is injected (tests.job_functions): these tests are about the queue, the
states, progress, cancel and a killed worker, not rendering. Waits are bounded polls.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.jobs.rq import LOST_WORKER, RqJobs

WAIT_S = 180


@pytest.fixture
def rq_jobs(make_settings: Any, redis_url: str, rq_worker: Any, tmp_path: Path):
    from redis import Redis

    Redis.from_url(redis_url).flushdb()
    settings = make_settings(jobs_backend="rq", redis_url=redis_url)
    # OMP_NUM_THREADS as a host might set it: INFERENCE_THREADS decides what the jobs' pools get
    worker = rq_worker({"REDIS_URL": redis_url, "LOG_LEVEL": "INFO", "STATE_DIR": str(tmp_path / "state"),
                        "INFERENCE_THREADS": "1", "OMP_NUM_THREADS": "7"})
    engine = RqJobs(settings, function="tests.job_functions:scripted")
    engine.worker = worker
    yield engine
    for name in ("gate-rq", "gate-rq-kill"):
        (tmp_path / name).touch()


def submit(engine: RqJobs, **options: Any):
    return engine.submit(kind="animation", options={"size": 256, **options}, image=b"IMG",
                         audio=np.zeros(800, dtype=np.float32), need_mb=100)


def wait_state(engine: RqJobs, job_id: str, *states: str):
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        record = engine.get(job_id)
        if record is not None and record.state in states:
            return record
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {states}: {engine.get(job_id)}\n{engine.worker.output()}")


def wait_file(path: Path) -> str:
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} never written")


def test_a_job_runs_on_the_worker_with_progress_and_its_result_in_redis(rq_jobs, tmp_path):
    record = submit(rq_jobs, frames=4, alloc_mb=32)
    assert record.state == "queued" and record.progress["stage"] == "queued"
    done = wait_state(rq_jobs, record.id, "done", "failed")
    assert done.state == "done", (done, rq_jobs.worker.output())
    assert done.progress["percent"] == 100.0 and done.error is None
    assert done.facts["frames"] == 4 and done.facts["audio_samples"] == 800 and done.facts["peak_mb"] >= 32
    assert rq_jobs.open_result(done).read() == b"IMG" * 4
    assert rq_jobs.measured_peak_mb("animation", 256) == done.facts["peak_mb"]
    assert not rq_jobs.redis.exists(f"animation:input:{record.id}")  # inputs go when the job ends
    assert done.facts["pool_threads"] == "1"  # the worker sized the job's thread pools before it started
    assert "-> 1 inference thread(s) (INFERENCE_THREADS)" in rq_jobs.worker.output()


def test_cancel_queued_and_running_jobs_and_typed_failures(rq_jobs, tmp_path):
    gate = tmp_path / "gate-rq"
    running = submit(rq_jobs, gate=str(gate))
    queued = submit(rq_jobs)
    wait_state(rq_jobs, running.id, "running")
    assert rq_jobs.cancel(queued.id) == "cancelled"
    assert rq_jobs.get(queued.id).state == "cancelled"
    assert rq_jobs.cancel(running.id) == "running"
    cancelled = wait_state(rq_jobs, running.id, "cancelled", "done", "failed")
    assert cancelled.state == "cancelled" and cancelled.error["code"] == "cancelled"
    assert rq_jobs.open_result(cancelled) is None
    typed = wait_state(rq_jobs, submit(rq_jobs, fail="typed").id, "failed", "done")
    assert typed.error["status"] == 422 and "no face" in typed.error["message"]
    assert rq_jobs.cancel("no-such-job") is None


def test_a_killed_job_process_leaves_the_job_failed(rq_jobs, tmp_path):
    pid_file = tmp_path / "horse.pid"
    record = submit(rq_jobs, gate=str(tmp_path / "gate-rq-kill"), pid_file=str(pid_file))
    os.kill(int(wait_file(pid_file)), signal.SIGKILL)  # what the OOM killer does to the biggest process
    failed = wait_state(rq_jobs, record.id, "failed", "done", "cancelled")
    assert failed.state == "failed" and "killed" in failed.error["message"], failed.error
    follow = wait_state(rq_jobs, submit(rq_jobs, frames=1).id, "done", "failed")
    assert follow.state == "done"  # the worker goes on


def test_a_job_whose_whole_worker_died_is_failed_not_running_forever(rq_jobs, tmp_path):
    from rq.registry import StartedJobRegistry

    pid_file = tmp_path / "horse.pid"
    record = submit(rq_jobs, gate=str(tmp_path / "gate-rq-kill"), pid_file=str(pid_file))
    horse = int(wait_file(pid_file))
    wait_state(rq_jobs, record.id, "running")
    os.kill(rq_jobs.worker.proc.pid, signal.SIGKILL)  # the worker and its job process: a machine gone
    os.kill(horse, signal.SIGKILL)
    rq_jobs.worker.proc.wait()
    assert rq_jobs.get(record.id).state == "running"  # its heartbeat has not expired yet
    # RQ fails a started job once its heartbeat is older than the monitoring interval + 60 s; this
    # is that moment, without sleeping through it (the slow test below waits the real time)
    StartedJobRegistry(queue=rq_jobs.queue).cleanup(timestamp=time.time() + 3600)
    failed = rq_jobs.get(record.id)
    assert failed.state == "failed" and failed.error["message"] == LOST_WORKER


@pytest.mark.slow
def test_a_dead_workers_job_fails_by_itself_after_the_heartbeat_expires(rq_jobs, tmp_path):
    pid_file = tmp_path / "horse.pid"
    record = submit(rq_jobs, gate=str(tmp_path / "gate-rq-kill"), pid_file=str(pid_file))
    horse = int(wait_file(pid_file))
    os.kill(rq_jobs.worker.proc.pid, signal.SIGKILL)
    os.kill(horse, signal.SIGKILL)
    failed = wait_state(rq_jobs, record.id, "failed")
    assert failed.error["message"] == LOST_WORKER


def test_sigterm_lets_the_running_job_finish_then_the_worker_exits(rq_jobs, tmp_path):
    """What a deploy does to the worker (render.yaml's maxShutdownDelaySeconds is the time it gets)."""
    gate = tmp_path / "gate-rq"
    record = submit(rq_jobs, gate=str(gate))
    wait_state(rq_jobs, record.id, "running")
    rq_jobs.worker.proc.send_signal(signal.SIGTERM)
    gate.touch()
    done = wait_state(rq_jobs, record.id, "done", "failed", "cancelled")
    assert done.state == "done", (done.error, rq_jobs.worker.output())
    assert rq_jobs.worker.proc.wait(timeout=WAIT_S) == 0
