"""Job records: one SQLite file under JOBS_DIR that every worker, and each job's process, reads and writes.

The local backend keeps its queue here too (state `queued`, oldest first), so a job accepted by
one Gunicorn worker can be run, watched or cancelled from any other, and a record outlives the
worker that wrote it: a finished result survives a restart. Each statement is short and commits
at once (WAL journal, a busy timeout): readers never wait for a job, only for another write.
A state only moves forward: queued -> running -> done | failed | cancelled (queued -> cancelled);
every transition is one UPDATE guarded by the state it expects, so two processes racing (the job
finishing, a reaper finding it dead, a cancel) cannot both win.
"""
from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.jobs.progress import finished_progress, queued_progress

DB_NAME = "jobs.sqlite3"
BUSY_TIMEOUT_S = 30
STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    function TEXT NOT NULL,
    options TEXT NOT NULL,
    need_mb REAL NOT NULL,
    progress TEXT NOT NULL,
    error TEXT,
    facts TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    runner_pid INTEGER,
    runner_started_at REAL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created_at);
"""


def new_job_id() -> str:
    """128 random bits, URL-safe: ids cannot be guessed or enumerated."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    state: str
    function: str
    options: dict[str, Any]
    need_mb: float
    progress: dict[str, Any]
    error: dict[str, Any] | None
    facts: dict[str, Any]
    result: str | None
    cancel_requested: bool
    runner_pid: int | None
    runner_started_at: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def public(self) -> dict[str, Any]:
        """The GET /api/jobs/<id> shape."""
        return {"id": self.id, "state": self.state, "progress": self.progress, "error": self.error,
                "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
                "cancel_requested": self.cancel_requested, "facts": self.facts}


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(id=row["id"], kind=row["kind"], state=row["state"], function=row["function"],
                     options=json.loads(row["options"]), need_mb=row["need_mb"],
                     progress=json.loads(row["progress"]), error=json.loads(row["error"]) if row["error"] else None,
                     facts=json.loads(row["facts"]), result=row["result"],
                     cancel_requested=bool(row["cancel_requested"]), runner_pid=row["runner_pid"],
                     runner_started_at=row["runner_started_at"], created_at=row["created_at"],
                     started_at=row["started_at"], finished_at=row["finished_at"])


class JobStore:
    """The jobs table in JOBS_DIR/jobs.sqlite3; safe to use from any thread or process (one connection per call)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            yield db

    # --- reading -------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row else None

    def in_state(self, *states: str) -> list[JobRecord]:
        marks = ",".join("?" * len(states))
        with self._db() as db:
            rows = db.execute(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created_at", states).fetchall()
        return [_record(row) for row in rows]

    def count(self, state: str) -> int:
        with self._db() as db:
            return db.execute("SELECT count(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0]

    def last_facts(self, kind: str, key: str, value: Any) -> dict[str, Any] | None:
        """Facts of the most recent done job of `kind` whose option `key` equals `value` (its speed, its peak)."""
        with self._db() as db:
            rows = db.execute("SELECT options, facts FROM jobs WHERE kind = ? AND state = 'done' "
                              "ORDER BY finished_at DESC LIMIT 20", (kind,)).fetchall()
        for row in rows:
            if json.loads(row["options"]).get(key) == value:
                return json.loads(row["facts"])
        return None

    # --- transitions -----------------------------------------------------------------------------
    def create(self, job_id: str, *, kind: str, function: str, options: dict[str, Any], need_mb: float,
               now: float | None = None) -> JobRecord:
        with self._db() as db:
            db.execute("INSERT INTO jobs (id, kind, state, function, options, need_mb, progress, created_at) "
                       "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                       (job_id, kind, function, json.dumps(options), need_mb, json.dumps(queued_progress()),
                        now or time.time()))
        record = self.get(job_id)
        assert record is not None
        return record

    def claim(self, job_id: str, *, max_running: int = 1) -> bool:
        """queued -> running, only while fewer than `max_running` jobs run service-wide."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # the count and the update are one step for every process
            try:
                running = db.execute("SELECT count(*) FROM jobs WHERE state = 'running'").fetchone()[0]
                claimed = running < max_running and db.execute(
                    "UPDATE jobs SET state = 'running', started_at = ? WHERE id = ? AND state = 'queued'",
                    (time.time(), job_id)).rowcount == 1
            finally:
                db.execute("COMMIT")
        return claimed

    def set_runner(self, job_id: str, pid: int, started_at: float) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET runner_pid = ?, runner_started_at = ? WHERE id = ?", (pid, started_at, job_id))

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET progress = ? WHERE id = ? AND state = 'running'", (json.dumps(progress), job_id))

    def cancel_requested(self, job_id: str) -> bool:
        with self._db() as db:
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def request_cancel(self, job_id: str) -> str | None:
        """A queued job is cancelled now; a running one is asked to stop. Returns the state after, None if unknown."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT state, progress FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    return None
                if row["state"] == "queued":
                    db.execute("UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?, "
                               "progress = ? WHERE id = ?",
                               (time.time(), json.dumps(finished_progress(json.loads(row["progress"]), "cancelled")),
                                job_id))
                    return "cancelled"
                if row["state"] == "running":
                    db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
                return row["state"]
            finally:
                db.execute("COMMIT")

    def finish(self, job_id: str, state: str, *, error: dict[str, Any] | None = None,
               facts: dict[str, Any] | None = None, result: str | None = None, expect: str = "running") -> bool:
        """running (or `expect`) -> done | failed | cancelled; False when the job was not in `expect` any more."""
        assert state in FINISHED
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT state, progress, facts FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None or row["state"] != expect:
                    return False
                merged = {**json.loads(row["facts"]), **(facts or {})}
                db.execute("UPDATE jobs SET state = ?, error = ?, facts = ?, result = ?, finished_at = ?, "
                           "progress = ? WHERE id = ?",
                           (state, json.dumps(error) if error else None, json.dumps(merged), result, time.time(),
                            json.dumps(finished_progress(json.loads(row["progress"]), state)), job_id))
                return True
            finally:
                db.execute("COMMIT")

    def delete(self, job_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def finished_before(self, cutoff: float) -> list[JobRecord]:
        """Finished jobs whose result is older than `cutoff` (epoch seconds): what JOB_TTL_S expires."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM jobs WHERE state IN ('done', 'failed', 'cancelled') "
                              "AND finished_at < ?", (cutoff,)).fetchall()
        return [_record(row) for row in rows]
