"""What a job function sees, and how any job function is run, in whichever process runs jobs.

A job function is `fn(ctx: JobContext) -> dict` named as "module:function" (so a fresh process
can import it): it reads `ctx.options`, `ctx.image`, `ctx.audio`, writes `ctx.output_path`
(atomically: a `.part` then a rename), calls `ctx.progress(stage, done, total)` as it goes and
stops with JobCancelled when `ctx.cancelled()` says so. It returns facts to keep (frames,
seconds per frame, ...). `run_job` turns whatever happens into the job's final state: done,
cancelled, or failed with the error's code, message and HTTP status; the process's peak RSS is
added to the facts and logged. The local backend's runner and the RQ task differ only in where
progress and the cancel flag live (SQLite or Redis): the two small subclasses.
"""
from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import ApiError
from backend.jobs.progress import ProgressTracker
from backend.memory import readings

logger = logging.getLogger(__name__)

#: a long render logs its progress at most this often (every batch on a 25 s/frame box)
LOG_EVERY_S = 10.0


class JobCancelled(Exception):
    """The job stopped because it was asked to (between two render batches)."""


@dataclass
class Outcome:
    """How a job ended: the final state, the error if it failed, the facts to keep."""

    state: str
    error: dict[str, Any] | None = None
    facts: dict[str, Any] = field(default_factory=dict)


class JobContext:
    """One running job: its inputs and options, where its result goes, progress and cancel."""

    def __init__(self, job_id: str, *, settings: Any, options: dict[str, Any], image: bytes | None,
                 audio: np.ndarray | None, output_path: Path, previous_s_per_frame: float | None = None) -> None:
        self.job_id = job_id
        self.settings = settings
        self.options = options
        self.image = image
        self.audio = audio
        self.output_path = Path(output_path)
        self.tracker = ProgressTracker(previous_s_per_frame=previous_s_per_frame)
        self._logged_at = 0.0

    def progress(self, stage: str, done: int, total: int) -> None:
        now = time.time()
        snapshot = self.tracker.mark(stage, done, total, now)
        self.publish_progress(snapshot)
        if now - self._logged_at >= LOG_EVERY_S or stage != "render" or done == total:
            self._logged_at = now
            logger.info("event=job_progress job=%s stage=%s done=%d total=%d percent=%.1f eta_s=%s", self.job_id,
                        stage, done, total, snapshot["percent"], snapshot["eta_s"])

    def publish_progress(self, snapshot: dict[str, Any]) -> None:
        raise NotImplementedError

    def cancelled(self) -> bool:
        raise NotImplementedError


def load_function(name: str) -> Callable[[JobContext], dict[str, Any] | None]:
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def run_job(ctx: JobContext, function: str) -> Outcome:
    """Run one job function to its end and say how it ended; never raises (the process must report)."""
    started = time.perf_counter()
    try:
        facts = dict(load_function(function)(ctx) or {})
        outcome = Outcome("done", facts=facts)
    except JobCancelled as exc:
        outcome = Outcome("cancelled", error={"code": "cancelled", "message": str(exc) or "cancelled", "status": 409})
    except ApiError as exc:
        outcome = Outcome("failed", error={"code": exc.code, "message": exc.message, "status": exc.status,
                                           **exc.details})
    except Exception as exc:  # the job's process reports any failure instead of dying silently
        logger.exception("job %s failed", ctx.job_id)
        outcome = Outcome("failed", error={"code": "job_failed", "message": f"{type(exc).__name__}: {exc}",
                                           "status": 500})
    elapsed = time.perf_counter() - started
    if outcome.state != "done":
        ctx.output_path.unlink(missing_ok=True)  # no half-written result is ever left behind
    measured = ctx.tracker.measured_s_per_frame
    outcome.facts.setdefault("seconds_per_frame", round(measured, 3) if measured is not None else None)
    peak = readings.peak_rss_mb()
    outcome.facts.update({"peak_mb": round(peak) if peak is not None else None, "job_s": round(elapsed, 1)})
    logger.info("event=job_finished job=%s state=%s job_s=%.1f peak_rss_mb=%s seconds_per_frame=%s error=%s",
                ctx.job_id, outcome.state, elapsed, outcome.facts["peak_mb"], outcome.facts["seconds_per_frame"],
                (outcome.error or {}).get("code"))
    return outcome
