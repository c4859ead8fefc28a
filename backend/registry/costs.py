"""Measured model costs, shared by every worker and kept across restarts: STATE_DIR/costs.json.

A worker that builds a model or serves a request alone writes what it measured under the
model's key (its files' identity, its backend and the settings that change its cost), so a
restarted or a second worker admits from measurements instead of the catalog's estimate.
Each figure keeps the largest value seen, because admission needs the worst case. Writes are
atomic (a temporary file renamed over the old one) and serialised by an advisory lock, so two
workers updating at once lose nothing and a reader never sees half a file. Where the folder is
not writable the figures stay in this process only, and that is said once.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

logger = logging.getLogger(__name__)

FILE_NAME = "costs.json"


@dataclass(frozen=True)
class MeasuredCost:
    """What builds and requests of one model measured, MB above the process before its load (imports excluded)."""

    measured_mb: float | None = None  # RSS after load minus before
    peak_load_mb: float | None = None  # peak RSS during load minus before
    first_use_mb: float | None = None  # RSS after the first request after a load minus before the load
    request_peak_mb: float | None = None  # largest rise of peak RSS during one request (activations)
    pid: int = 0  # the worker that measured last
    at: float = 0.0  # when, seconds since the epoch

    def cost_mb(self) -> float | None:
        """What building it again is expected to add (imports excluded); None before any build was measured."""
        if self.measured_mb is None:
            return None
        candidates = [m for m in (self.peak_load_mb, self.first_use_mb, self.measured_mb) if m is not None]
        if self.request_peak_mb is not None:
            candidates.append(self.measured_mb + self.request_peak_mb)
        return max(candidates)

    def merged(self, **figures: float | None) -> MeasuredCost:
        """This record with `figures` folded in (each keeps its largest value), stamped now by this process."""
        values = asdict(self)
        for name, value in figures.items():
            values[name] = _larger(values[name], value)
        values.update(pid=os.getpid(), at=time.time())
        return MeasuredCost(**values)


_FIELDS = {f.name for f in fields(MeasuredCost)}
_FIGURES = ("measured_mb", "peak_load_mb", "first_use_mb", "request_peak_mb")


def _larger(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


class CostBook:
    """The shared file of measured costs, read when it changed and merged under a lock when written."""

    def __init__(self, folder: Path | None) -> None:
        self.path = folder / FILE_NAME if folder is not None else None
        self._local: dict[str, MeasuredCost] = {}  # what this process measured (kept if the file cannot be)
        self._cache: dict[str, MeasuredCost] = {}
        self._cache_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._unwritable_logged = False

    def get(self, key: str) -> MeasuredCost | None:
        """The largest figures anyone measured for `key`: the shared file's and this process's."""
        with self._lock:
            shared, local = self._read().get(key), self._local.get(key)
        if shared is None or local is None:
            return shared or local
        newer, older = (local, shared) if local.at >= shared.at else (shared, local)
        combined = {name: _larger(getattr(newer, name), getattr(older, name)) for name in _FIGURES}
        return MeasuredCost(**combined, pid=newer.pid, at=newer.at)

    def measured_here(self, key: str) -> bool:
        """Whether this process measured `key` itself (else its figures came from another worker)."""
        with self._lock:
            return key in self._local

    def record(self, key: str, **figures: float | None) -> MeasuredCost:
        """Fold new measurements into `key`'s record, here and in the shared file; returns the merged record."""
        with self._lock:
            local = self._local.get(key, MeasuredCost()).merged(**figures)
            self._local[key] = local
            if self.path is None:
                return local
            shared = self._read().get(key)
            if shared is not None and all(_larger(getattr(shared, name), value) == getattr(shared, name)
                                          for name, value in figures.items()):
                return shared  # nothing grew: the file already says it (no write per request)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path.with_suffix(".lock"), "a") as lock_file:
                    fcntl.flock(lock_file, fcntl.LOCK_EX)
                    records = self._load_file()
                    merged = records.get(key, MeasuredCost()).merged(**figures)
                    records[key] = merged
                    self._write(records)
                return merged
            except OSError as exc:
                if not self._unwritable_logged:
                    self._unwritable_logged = True
                    logger.warning("cannot write measured costs to %s (%s): other workers and restarts will "
                                   "admit from estimates", self.path, exc)
                return local

    def _read(self) -> dict[str, MeasuredCost]:
        """The file's records, parsed again only when its size or mtime changed."""
        if self.path is None:
            return {}
        try:
            stat = self.path.stat()
        except OSError:
            return {}
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._cache_stamp:
            self._cache, self._cache_stamp = self._load_file(), stamp
        return self._cache

    def _load_file(self) -> dict[str, MeasuredCost]:
        assert self.path is not None
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a file someone else broke: start over rather than fail requests
            logger.warning("ignoring unreadable %s: %s", self.path, exc)
            return {}
        return {key: MeasuredCost(**{k: v for k, v in value.items() if k in _FIELDS})
                for key, value in raw.items() if isinstance(value, dict)}

    def _write(self, records: dict[str, MeasuredCost]) -> None:
        assert self.path is not None
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in sorted(records.items())}, indent=1) + "\n",
                       encoding="utf-8")
        os.replace(tmp, self.path)  # atomic: readers see the old file or the new one, never half
