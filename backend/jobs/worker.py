"""`python -m backend.jobs.worker` (scripts/worker.sh): an RQ worker for the `animation` queue with this project's settings.

Settings come from the environment as for the web service (config.py; a bad value stops it with
one line). At start it says whether animation can run here (checkpoint and face model files) and
how much memory a job takes, then works the queue with RQ's SpawnWorker: each job in a fresh
interpreter, whose memory all goes back when the job ends. Thread pools (torch, numpy's
OpenBLAS/OpenMP) are sized to the CPU quota before anything imports them, as in Gunicorn's master:
the jobs spawned inherit that (backend/cpu_quota.py).
"""
from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    from backend.cpu_quota import inference_threads, limit_thread_pools, start_line
    from config import load_settings

    settings = load_settings()
    # Before numpy or torch is imported, here or in a job (they read it when they start).
    limit_thread_pools(inference_threads(settings.inference_threads))

    from rq import Queue
    from rq.worker import SpawnWorker

    from backend import LOG_FORMAT
    from backend.catalog import ANIMATION_JOB_MB, pipeline_class
    from backend.jobs.rq import JOB_MONITORING_INTERVAL_S, QUEUE_NAME, _connection

    logging.basicConfig(format=LOG_FORMAT, level=settings.log_level)
    logger.info(start_line(settings.inference_threads))
    availability = pipeline_class("animation", "torch").availability(settings)
    if availability.servable:
        logger.info("animation: servable (%s); a job takes about %.0f MB at 256 px, %.0f MB at 512 px",
                    availability.source, ANIMATION_JOB_MB[256], ANIMATION_JOB_MB[512])
    else:  # jobs fail with the same reason; the worker still runs so the queue does not fill up silently
        logger.error("animation: NOT servable here: %s; to fix: %s", availability.reason, availability.fix)
    redis = _connection(settings.redis_url)
    worker = SpawnWorker([Queue(QUEUE_NAME, connection=redis)], connection=redis,
                         job_monitoring_interval=JOB_MONITORING_INTERVAL_S)
    worker.work(burst="--burst" in argv, logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
