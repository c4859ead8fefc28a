"""The local backend's job process: `python -m backend.jobs.runner JOBS_DIR JOB_ID`, settings as JSON on stdin.

Started by backend.jobs.local as a fresh interpreter (never forked from a worker that holds model
threads and locks), it reads its inputs from JOBS_DIR/<id>/, runs the job function, and writes
the final state to the record itself, so a job whose web worker was restarted meanwhile still
finishes and is found done. When it ends, all its memory goes back to the system.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from backend.jobs.context import JobContext, run_job
from backend.jobs.records import JobStore

logger = logging.getLogger(__name__)

IMAGE_FILE = "image"
AUDIO_FILE = "audio.npy"
RESULT_FILE = "result.mp4"


class LocalJobContext(JobContext):
    """Progress and the cancel flag live in the SQLite record."""

    def __init__(self, store: JobStore, job_id: str, **kwargs: Any) -> None:
        super().__init__(job_id, **kwargs)
        self.store = store

    def publish_progress(self, snapshot: dict[str, Any]) -> None:
        self.store.set_progress(self.job_id, snapshot)

    def cancelled(self) -> bool:
        return self.store.cancel_requested(self.job_id)


def remove_inputs(folder: Path) -> None:
    """Inputs and any partial output go; a finished result stays."""
    for path in folder.glob("*"):
        if path.name != RESULT_FILE:
            path.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    from backend import LOG_FORMAT
    from config import Settings

    jobs_dir, job_id = Path(argv[0]), argv[1]
    settings = Settings(**json.loads(sys.stdin.read()))
    logging.basicConfig(format=LOG_FORMAT)
    logging.getLogger("backend").setLevel(settings.log_level)
    store = JobStore(jobs_dir)
    record = store.get(job_id)
    if record is None or record.state != "running":
        logger.warning("job %s is not running (%s): nothing to do", job_id, record and record.state)
        return 0
    folder = jobs_dir / job_id
    audio_path = folder / AUDIO_FILE
    previous = store.last_facts(record.kind, "size", record.options.get("size")) or {}
    ctx = LocalJobContext(store, job_id, settings=settings, options=record.options,
                          image=(folder / IMAGE_FILE).read_bytes() if (folder / IMAGE_FILE).exists() else None,
                          audio=np.load(audio_path) if audio_path.exists() else None,
                          output_path=folder / RESULT_FILE, previous_s_per_frame=previous.get("seconds_per_frame"))
    outcome = run_job(ctx, record.function)
    remove_inputs(folder)
    store.finish(job_id, outcome.state, error=outcome.error, facts=outcome.facts,
                 result=RESULT_FILE if outcome.state == "done" else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
