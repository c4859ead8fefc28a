"""JOBS_BACKEND=rq: the same jobs on an RQ queue named `animation` on REDIS_URL, run by scripts/worker.sh.

The web service only enqueues and reads: it holds no model and refuses nothing for memory (the
worker's machine is sized for the job). What lives in Redis, all of it expiring:

    rq:job:<id>                 RQ's job: its state; meta holds kind, options, need_mb, progress,
                                and, once it ended, outcome, error and facts
    animation:input:<id>        the portrait and the 16 kHz speech (.npy), deleted when the job ends
    animation:result:<id>       the finished MP4, kept JOB_TTL_S (the web service serves it from here,
                                so web and worker share nothing but Redis)
    animation:cancel:<id>       set by DELETE; the job stops at its next render batch
    animation:peak:<size>       the last job's peak RSS at that size (its expected cost)

A worker runs each job in a fresh interpreter (RQ's SpawnWorker: nothing forked). If that process
is killed (out of memory, SIGKILL), RQ's worker marks the job failed at once; if the whole worker
is gone, its heartbeat stops and the next read here moves the job to failed (RQ's
StartedJobRegistry.cleanup, AbandonedJobError) with an error that says so: a job is never
`running` forever.
"""
from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

from backend.errors import JobQueueFull, ServiceUnavailable
from backend.jobs.context import JobContext, run_job
from backend.jobs.progress import finished_progress, queued_progress
from backend.jobs.records import JobRecord, new_job_id

logger = logging.getLogger(__name__)

QUEUE_NAME = "animation"
TASK = "backend.jobs.rq.run_task"
INPUT_KEY = "animation:input:{}"
RESULT_KEY = "animation:result:{}"
CANCEL_KEY = "animation:cancel:{}"
PEAK_KEY = "animation:peak:{}"
#: inputs waiting in the queue expire after this (a job nobody runs for a week is not run)
INPUT_TTL_S = 7 * 86_400
#: RQ's interval between a worker's heartbeats for a running job (its default is 30 s): a dead
#: worker's job is failed after this + 60 s
JOB_MONITORING_INTERVAL_S = 10
LOST_WORKER = ("the worker running this job stopped (no heartbeat from it: killed, out of memory, or its machine "
               "went away); send the job again")
KILLED_HORSE = "the job's process on the worker was killed ({}) before it finished (out of memory?)"


def _connection(url: str):
    from redis import Redis

    if not url:
        raise ServiceUnavailable("JOBS_BACKEND=rq needs REDIS_URL (redis://host:6379/0)")
    return Redis.from_url(url)


def _ttl(seconds: int) -> int | None:
    """RQ's and Redis's expiry for JOB_TTL_S: 0 means keep (None / -1)."""
    return seconds if seconds > 0 else None


class RqJobs:
    """The web side of the rq backend: enqueue, read state and progress, cancel, serve results."""

    backend = "rq"

    def __init__(self, settings: Any, *, function: str = "backend.jobs.animation:animate") -> None:
        self.settings = settings
        self.function = function
        self._redis = None
        self._queue = None

    @property
    def redis(self):
        if self._redis is None:
            self._redis = _connection(self.settings.redis_url)
        return self._redis

    @property
    def queue(self):
        from rq import Queue

        if self._queue is None:
            self._queue = Queue(QUEUE_NAME, connection=self.redis)
        return self._queue

    def start_worker(self) -> None:
        """Nothing runs in the web service with this backend."""

    # --- the API's side ---------------------------------------------------------------------------
    def submit(self, *, kind: str, options: dict[str, Any], image: bytes, audio: np.ndarray,
               need_mb: float) -> JobRecord:
        from redis.exceptions import RedisError

        try:
            queued = self.queue.count
            if queued >= self.settings.max_queued_jobs:
                raise JobQueueFull(f"{queued} jobs are already waiting (MAX_QUEUED_JOBS="
                                   f"{self.settings.max_queued_jobs}); retry later",
                                   headers={"Retry-After": str(self.settings.retry_after_s)}, queued=queued)
            job_id = new_job_id()
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(audio, dtype=np.float32))
            key = INPUT_KEY.format(job_id)
            with self.redis.pipeline() as pipe:
                pipe.hset(key, mapping={"image": image, "audio": buffer.getvalue()})
                pipe.expire(key, INPUT_TTL_S)
                pipe.execute()
            ttl = _ttl(self.settings.job_ttl_s)
            job = self.queue.enqueue_call(
                func=TASK, kwargs={"function": self.function}, job_id=job_id, timeout=-1,  # a job ends by itself
                result_ttl=ttl or -1, failure_ttl=ttl, ttl=INPUT_TTL_S,
                meta={"kind": kind, "options": options, "need_mb": need_mb, "progress": queued_progress()})
        except RedisError as exc:
            raise ServiceUnavailable(f"the jobs queue (REDIS_URL) cannot be reached: {exc}") from exc
        logger.info("event=job_queued job=%s kind=%s backend=rq queued=%d", job.id, kind, queued + 1)
        return self._record(job)

    def get(self, job_id: str) -> JobRecord | None:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus

        try:
            job = Job.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            return None
        if job.get_status(refresh=False) == JobStatus.STARTED:
            # a worker that died cannot mark its job: RQ's registry knows it by the missing heartbeat
            from rq.registry import StartedJobRegistry

            StartedJobRegistry(queue=self.queue).cleanup()
            job.refresh()
        return self._record(job)

    def measured_peak_mb(self, kind: str, size: int) -> float | None:
        value = self.redis.get(PEAK_KEY.format(size))
        return float(value) if value is not None else None

    def cancel(self, job_id: str) -> str | None:
        record = self.get(job_id)
        if record is None:
            return None
        if record.state == "queued":
            from rq.job import Job

            Job.fetch(job_id, connection=self.redis).cancel()
            self.redis.delete(INPUT_KEY.format(job_id))
            return "cancelled"
        if record.state == "running":
            self.redis.set(CANCEL_KEY.format(job_id), 1, ex=INPUT_TTL_S)
        return record.state

    def open_result(self, record: JobRecord) -> io.BytesIO | None:
        data = self.redis.get(RESULT_KEY.format(record.id)) if record.state == "done" else None
        return io.BytesIO(data) if data is not None else None

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "queue": QUEUE_NAME, "queued": self.queue.count}

    # --- RQ's job -> our record -------------------------------------------------------------------
    def _record(self, job: Any) -> JobRecord:
        from rq.job import JobStatus

        meta = job.get_meta(refresh=False)
        status = job.get_status(refresh=False)
        outcome = meta.get("outcome")
        error = meta.get("error")
        if outcome is not None:
            state = outcome
        elif status == JobStatus.FAILED:
            state = "failed"
            error = {"code": "job_failed", "status": 500, "message": _failure_message(job)}
        elif status in (JobStatus.CANCELED, JobStatus.STOPPED):
            state = "cancelled"
            error = {"code": "cancelled", "status": 409, "message": "cancelled"}
        elif status == JobStatus.STARTED:
            state = "running"
        elif status == JobStatus.FINISHED:  # finished without our outcome: not our task
            state = "failed"
            error = {"code": "job_failed", "status": 500, "message": "the job ended without a result"}
        else:
            state = "queued"
        progress = meta.get("progress") or queued_progress()
        if state in ("done", "failed", "cancelled"):
            progress = finished_progress(progress, state)
        return JobRecord(
            id=job.id, kind=meta.get("kind", ""), state=state, function=self.function,
            options=meta.get("options", {}), need_mb=float(meta.get("need_mb", 0)), progress=progress, error=error,
            facts=meta.get("facts", {}), result=RESULT_KEY.format(job.id) if state == "done" else None,
            cancel_requested=bool(self.redis.exists(CANCEL_KEY.format(job.id))), runner_pid=None,
            runner_started_at=None, created_at=_epoch(job.created_at), started_at=_epoch(job.started_at),
            finished_at=_epoch(job.ended_at) if state in ("done", "failed", "cancelled") else None)


def _epoch(moment: Any) -> float | None:
    return moment.timestamp() if moment is not None else None


def _failure_message(job: Any) -> str:
    """RQ's own account of a failure we could not record, in words for the client."""
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or ""
    if "AbandonedJobError" in text:
        return LOST_WORKER
    if "Work-horse terminated unexpectedly" in text:
        signal = text.split("waitpid returned", 1)[1].split(";", 1)[0].strip()
        return KILLED_HORSE.format(f"waitpid status {signal}")
    last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
    return f"the job failed on the worker: {last}"


# --- the worker's side --------------------------------------------------------------------------------
class RqJobContext(JobContext):
    """Progress in the job's meta, the cancel flag in its own key (the web never writes the meta)."""

    def __init__(self, job: Any, **kwargs: Any) -> None:
        super().__init__(job.id, **kwargs)
        self.job = job

    def publish_progress(self, snapshot: dict[str, Any]) -> None:
        self.job.meta["progress"] = snapshot
        self.job.save_meta()

    def cancelled(self) -> bool:
        return bool(self.job.connection.exists(CANCEL_KEY.format(self.job.id)))


class JobEnded(Exception):
    """Raised after a failed or cancelled job recorded its outcome, so RQ counts it as failed too."""


def run_task(*, function: str) -> dict[str, Any]:
    """RQ's entry point in the worker's job process: inputs from Redis, the MP4 back into it."""
    from rq import get_current_job

    from backend import LOG_FORMAT
    from backend.memory import readings
    from config import load_settings

    settings = load_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(format=LOG_FORMAT)
    logging.getLogger("backend").setLevel(settings.log_level)
    readings.reset_peak_rss()  # this process's peak from here on is the job's
    job = get_current_job()
    redis = job.connection
    meta = job.get_meta()
    inputs = redis.hgetall(INPUT_KEY.format(job.id))
    options = meta.get("options", {})
    previous = redis.get(f"animation:spf:{options.get('size')}")
    with TemporaryDirectory(prefix="animation-job-") as folder:
        output = Path(folder) / "result.mp4"
        ctx = RqJobContext(job, settings=settings, options=options, image=inputs.get(b"image"),
                           audio=np.load(io.BytesIO(inputs[b"audio"])) if b"audio" in inputs else None,
                           output_path=output, previous_s_per_frame=float(previous) if previous else None)
        outcome = run_job(ctx, function)
        ttl = _ttl(settings.job_ttl_s)
        with redis.pipeline() as pipe:
            if outcome.state == "done":
                pipe.set(RESULT_KEY.format(job.id), output.read_bytes(), ex=ttl)
                if outcome.facts.get("peak_mb"):
                    pipe.set(PEAK_KEY.format(options.get("size")), outcome.facts["peak_mb"])
                if outcome.facts.get("seconds_per_frame"):
                    pipe.set(f"animation:spf:{options.get('size')}", outcome.facts["seconds_per_frame"])
            pipe.delete(INPUT_KEY.format(job.id), CANCEL_KEY.format(job.id))
            pipe.execute()
    job.meta.update(outcome=outcome.state, error=outcome.error, facts=outcome.facts,
                    progress=finished_progress(job.meta.get("progress"), outcome.state), ended=time.time())
    job.save_meta()
    if outcome.state != "done":
        raise JobEnded(f"{outcome.state}: {(outcome.error or {}).get('message')}")
    return outcome.facts
