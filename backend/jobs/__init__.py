"""Jobs: long work (talking-head animation) run apart from the web worker, watched and fetched over HTTP.

    progress.py  percent and ETA from a job's marks (pure)
    records.py   JobStore: job records in SQLite under JOBS_DIR (the local backend's queue too)
    context.py   JobContext (what a job function sees) and run_job (how any job ends: done,
                 failed with a typed error, cancelled; peak RSS in its facts)
    runner.py    the local backend's job process (a fresh interpreter)
    local.py     JOBS_BACKEND=local: dispatcher, child processes, reaping, expiry
    rq.py        JOBS_BACKEND=rq: the same jobs on an RQ queue on REDIS_URL (scripts/worker.sh runs them)
    animation.py the animation job function: AnimationPipeline in the job's process

The blueprint (backend/api/animation.py) finds the engine with get_jobs(); both backends answer
submit / get / cancel / open_result with the same record shape.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, current_app

EXTENSION = "jobs"  # the key in app.extensions; read only through get_jobs()


def make_jobs(settings: Any, registry: Any = None, **kwargs: Any) -> Any:
    """The engine JOBS_BACKEND names (nothing is started until the first job or request)."""
    if settings.jobs_backend == "rq":
        from backend.jobs.rq import RqJobs
        return RqJobs(settings, **kwargs)
    from backend.jobs.local import LocalJobs
    return LocalJobs(settings, registry, **kwargs)


def init_app(app: Flask, jobs: Any) -> None:
    app.extensions[EXTENSION] = jobs


def get_jobs(app: Flask | None = None) -> Any:
    """The jobs engine of `app`, by default of the app handling the current request."""
    return (app or current_app).extensions[EXTENSION]
