"""JOBS_BACKEND=local: jobs queued in SQLite under JOBS_DIR, each run in a fresh child process of a worker.

Every Gunicorn worker runs a dispatcher thread. A round: fail the running jobs whose process is
gone without a word (killed: out of memory, a restart), expire finished jobs older than
JOB_TTL_S, then start the oldest queued job if none runs anywhere in the service and the
registry can make room for it (idle models evicted first). A job that does not fit beside what
is loaded stays queued and is asked again next round; one that can never fit is refused before
it is queued (backend.api.animation). The job's process is a fresh interpreter
(backend.jobs.runner: spawned, not forked from a worker holding model threads); while it runs,
its worker keeps the rest of the job's expected cost reserved in the registry (the expected
cost less what the child holds now, which the service's memory reading already counts), and
when it exits all its memory is returned. A child that dies is found by its own worker
(waitpid) or, if that worker died too, by any worker's next round (its pid gone).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from backend.errors import JobQueueFull
from backend.jobs.records import JobRecord, JobStore, new_job_id
from backend.jobs.runner import AUDIO_FILE, IMAGE_FILE, RESULT_FILE, remove_inputs
from backend.memory import readings

if TYPE_CHECKING:
    from backend.registry import ModelRegistry

logger = logging.getLogger(__name__)

POLL_S = 1.0  # dispatcher and watcher period: a job starts within this of a slot freeing
#: a claimed job whose process never started (its worker died in between) is failed after this
START_GRACE_S = 120.0
MAX_RUNNING = 1  # one job at a time in the whole service: a job takes every core and ~1.1 GB


def exit_reason(status: int) -> str:
    """What a wait status says about a process that ended without reporting."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (out of memory?)" if sig == signal.SIGKILL else ""
        return f"the job's process was killed by {name}{hint} before it finished"
    return f"the job's process exited with code {os.waitstatus_to_exitcode(status)} before it finished"


class LocalJobs:
    """The embedded jobs engine: queue and records in SQLite, one child process per running job."""

    backend = "local"

    def __init__(self, settings: Any, registry: ModelRegistry | None = None, *,
                 function: str = "backend.jobs.animation:animate", poll_s: float = POLL_S) -> None:
        self.settings = settings
        self.registry = registry
        self.function = function
        self.poll_s = poll_s
        self.folder = Path(settings.jobs_root)
        self.store = JobStore(self.folder)
        self.ttl_s = settings.job_ttl_s
        self.max_queued = settings.max_queued_jobs
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._started_pid: int | None = None
        self._lock = threading.Lock()
        self._dispatching = threading.Lock()  # one round at a time: a reservation is made and released by one round
        self._children: dict[str, subprocess.Popen] = {}

    # --- the API's side ---------------------------------------------------------------------------
    def submit(self, *, kind: str, options: dict[str, Any], image: bytes, audio: np.ndarray,
               need_mb: float) -> JobRecord:
        """Queue a job; its inputs are on disk before the record exists, so a queued job is always runnable."""
        queued = self.store.count("queued")
        if queued >= self.max_queued:
            raise JobQueueFull(f"{queued} jobs are already waiting (MAX_QUEUED_JOBS={self.max_queued}); retry later",
                               headers={"Retry-After": str(self.settings.retry_after_s)}, queued=queued)
        job_id = new_job_id()
        incoming = self.folder / f".incoming-{job_id}"
        incoming.mkdir(parents=True)
        try:
            (incoming / IMAGE_FILE).write_bytes(image)
            np.save(incoming / AUDIO_FILE, np.asarray(audio, dtype=np.float32))
            incoming.rename(self.folder / job_id)  # atomic: the job's folder is complete or absent
            record = self.store.create(job_id, kind=kind, function=self.function, options=options, need_mb=need_mb)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            shutil.rmtree(self.folder / job_id, ignore_errors=True)
            raise
        logger.info("event=job_queued job=%s kind=%s need_mb=%.0f queued=%d", job_id, kind, need_mb, queued + 1)
        self.ensure_started()
        self._wake.set()
        return record

    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    def measured_peak_mb(self, kind: str, size: int) -> float | None:
        """The peak RSS of the last finished job of this kind and size (the next one's cost), if any."""
        return (self.store.last_facts(kind, "size", size) or {}).get("peak_mb")

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued job now, ask a running one to stop at its next batch; the state after, None if unknown."""
        state = self.store.request_cancel(job_id)
        if state == "cancelled":
            shutil.rmtree(self.folder / job_id, ignore_errors=True)
        return state

    def result(self, record: JobRecord) -> Path | None:
        path = self.folder / record.id / (record.result or RESULT_FILE)
        return path if record.state == "done" and path.is_file() else None

    def open_result(self, record: JobRecord) -> Path | None:
        """Where the finished MP4 is (None when it is gone): Flask sends it with ranges and an ETag."""
        return self.result(record)

    # --- the dispatcher ------------------------------------------------------------------------------
    def start_worker(self) -> None:
        """In a freshly started Gunicorn worker: its dispatcher runs jobs queued before a restart."""
        self.ensure_started()

    def ensure_started(self) -> None:
        """Start this process's dispatcher once (threads do not survive Gunicorn's fork)."""
        if self._started_pid == os.getpid():
            return
        with self._lock:
            if self._started_pid == os.getpid():
                return
            self._started_pid = os.getpid()
            self._children = {}
        threading.Thread(target=self._dispatch_forever, name="jobs-dispatcher", daemon=True).start()

    def _dispatch_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.dispatch_once()
            except Exception:  # the dispatcher must outlive any one bad round (a locked database, a full disk)
                logger.exception("jobs dispatcher round failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def dispatch_once(self, now: float | None = None) -> str | None:
        """One round: reap, expire, start the next job if it fits; returns the id of a job started."""
        with self._dispatching:
            return self._dispatch(now)

    def _dispatch(self, now: float | None) -> str | None:
        self.reap()
        self.expire(now)
        if self.store.count("running") >= MAX_RUNNING:
            return None
        queued = self.store.in_state("queued")
        if not queued:
            return None
        record = queued[0]
        if self.registry is not None and not self.registry.admit_job(record.kind, record.need_mb):
            return None  # waits in the queue until loaded models go idle or another job ends
        if not self.store.claim(record.id, max_running=MAX_RUNNING):
            self._release(record.kind)
            return None
        self._spawn(record)
        return record.id

    def _spawn(self, record: JobRecord) -> None:
        try:
            proc = subprocess.Popen([sys.executable, "-m", "backend.jobs.runner", str(self.folder), record.id],
                                    stdin=subprocess.PIPE, start_new_session=True)
            # the settings go on stdin, not to disk: they may hold API keys
            assert proc.stdin is not None
            proc.stdin.write(self.settings.model_dump_json().encode())
            proc.stdin.close()
            started = psutil.Process(proc.pid).create_time()
        except Exception as exc:
            logger.exception("job %s: its process could not be started", record.id)
            self.store.finish(record.id, "failed", error={"code": "job_failed", "status": 500,
                                                          "message": f"the job's process could not start: {exc}"})
            self._release(record.kind)
            return
        self.store.set_runner(record.id, proc.pid, started)
        self._children[record.id] = proc
        logger.info("event=job_started job=%s pid=%d need_mb=%.0f", record.id, proc.pid, record.need_mb)
        threading.Thread(target=self._watch, args=(record, proc), name=f"job-{record.id[:8]}", daemon=True).start()

    def _watch(self, record: JobRecord, proc: subprocess.Popen) -> None:
        """Keep the job's reservation current while its process runs; report it if it dies without a word."""
        while True:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                break
            if self.registry is not None:
                try:
                    held = readings.rss_mb(proc.pid)
                except psutil.NoSuchProcess:
                    held = 0.0
                self.registry.reserve_job(record.kind, max(0.0, record.need_mb - held))
            time.sleep(self.poll_s / 2)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        self._children.pop(record.id, None)
        self._release(record.kind)
        current = self.store.get(record.id)  # None: expired meanwhile
        if current is not None and current.state == "running":  # it died without reporting: its files go first
            remove_inputs(self.folder / record.id)
        if self.store.finish(record.id, "failed", error={"code": "job_failed", "status": 500,
                                                         "message": exit_reason(status)}):
            logger.error("event=job_lost job=%s pid=%d %s", record.id, proc.pid, exit_reason(status))
        final = self.store.get(record.id)
        if final is not None:
            logger.info("event=job_ended job=%s state=%s peak_rss_mb=%s seconds_per_frame=%s", record.id, final.state,
                        final.facts.get("peak_mb"), final.facts.get("seconds_per_frame"))
        self._wake.set()

    def _release(self, kind: str) -> None:
        if self.registry is not None:
            self.registry.reserve_job(kind, 0.0)

    def reap(self) -> list[str]:
        """Fail running jobs whose process is gone (its worker died too, so nobody waited for it)."""
        failed = []
        for record in self.store.in_state("running"):
            if record.id in self._children:
                continue  # ours: its watcher reports it
            if record.runner_pid is None:
                if time.time() - (record.started_at or 0) < START_GRACE_S:
                    continue  # being started right now
                reason = "the worker that claimed this job stopped before starting it"
            elif _alive(record.runner_pid, record.runner_started_at):
                continue
            else:
                reason = "the job's process ended without a result (killed, or the machine restarted)"
            remove_inputs(self.folder / record.id)  # its process is gone: nothing writes there any more
            if self.store.finish(record.id, "failed", error={"code": "job_failed", "status": 500, "message": reason}):
                logger.error("event=job_lost job=%s %s", record.id, reason)
                failed.append(record.id)
        return failed

    def expire(self, now: float | None = None) -> list[str]:
        """Delete finished jobs (record and files) older than JOB_TTL_S; 0 keeps them forever."""
        if self.ttl_s <= 0:
            return []
        expired = []
        for record in self.store.finished_before((now or time.time()) - self.ttl_s):
            shutil.rmtree(self.folder / record.id, ignore_errors=True)
            self.store.delete(record.id)
            expired.append(record.id)
        if expired:
            logger.info("event=jobs_expired count=%d ttl_s=%d", len(expired), self.ttl_s)
        return expired

    def shutdown(self) -> None:
        """Stop the dispatcher (tests). Running jobs' processes go on and record their own end."""
        self._stop.set()
        self._wake.set()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "jobs_dir": str(self.folder), "queued": self.store.count("queued"),
                "running": self.store.count("running"), "max_queued": self.max_queued, "ttl_s": self.ttl_s}


def _alive(pid: int, started_at: float | None) -> bool:
    """Whether the process that ran a job still runs (same pid and start time: pids are reused)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and (
            started_at is None or abs(process.create_time() - started_at) < 1.0)
    except psutil.NoSuchProcess:
        return False
