"""Measured model costs, shared by every worker and kept across restarts: STATE_DIR/costs.json.

A worker that builds a model or serves a request alone writes what it measured under the
model's key (its files' identity, its backend and the settings that change its cost), so a
restarted or a second worker admits from measurements instead of the catalog's estimate.
A build's figures (its steady size, its peak while loading, after its first request) keep the
largest value seen: they are measured once per build and do not depend on what was asked. A
request's activations do, so they are not kept as "the largest ever" (one long numeric text
would shrink the service for good, across restarts): the last WINDOW requests are kept, each with
its size (what it asked: backend.registry.request_cost), and admission keeps room for the upper
envelope of those of the request's size or smaller, so a short request fits where a long one
would not, and a one-off outlier stops counting after WINDOW requests, not never.

Writes are atomic (a temporary file renamed over the old one) and serialised by an advisory
lock, so two workers updating at once lose nothing and a reader never sees half a file. A file
that does not parse, or holds a figure no measurement can give (negative, not a number, above
PLAUSIBLE_MB), is ignored whole, with one warning line, and replaced at the next write. Where the
folder is not writable the figures stay in this process only, and that is said once.
"""
from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FILE_NAME = "costs.json"
WINDOW = 32  # requests (size and peak) kept per model
PLAUSIBLE_MB = 65_536.0  # no figure of one model in one worker is larger: a file that says so is broken
WORKER_BOOT_KEY = "worker:boot"  # measured_mb = the service's memory at a worker's boot (the fresh-worker figure)


@dataclass(frozen=True)
class MeasuredCost:
    """What builds and requests of one model measured, MB above the process before its load (imports excluded)."""

    measured_mb: float | None = None  # RSS after load minus before
    peak_load_mb: float | None = None  # peak RSS during load minus before
    first_use_mb: float | None = None  # RSS after the first request after a load minus before the load
    request_peaks: tuple[float, ...] = ()  # the last WINDOW rises of peak RSS during one request, oldest first
    request_sizes: tuple[float | None, ...] = ()  # what each of those asked (request_cost); None = unknown
    pid: int = 0  # the worker that measured last
    at: float = 0.0  # when, seconds since the epoch

    @property
    def request_peak_mb(self) -> float | None:
        """The largest request peak in the window (shown; admission asks request_cost by size)."""
        return max(self.request_peaks) if self.request_peaks else None

    @property
    def samples(self) -> list[tuple[float | None, float]]:
        """The window's requests as (size, peak MB), oldest first."""
        return list(zip(self.request_sizes, self.request_peaks, strict=True))

    def build_mb(self) -> float | None:
        """What a build adds before any request runs (imports excluded); None before any build was measured."""
        if self.measured_mb is None:
            return None
        return max(m for m in (self.peak_load_mb, self.first_use_mb, self.measured_mb) if m is not None)

    def cost_mb(self) -> float | None:
        """What building it again and serving its largest request in the window is expected to add."""
        build = self.build_mb()
        if build is None or self.measured_mb is None:
            return None
        return max(build, self.measured_mb + (self.request_peak_mb or 0.0))

    def merged(self, request_peak_mb: float | None = None, request_size: float | None = None,
               **figures: float | None) -> MeasuredCost:
        """This record with `figures` folded in (each keeps its largest value) and one more request
        (its peak, of `request_size`) in the window, stamped now by this process."""
        values = asdict(self)
        for name, value in figures.items():
            values[name] = _larger(values[name], value)
        peaks, sizes = self.request_peaks, self.request_sizes
        if request_peak_mb is not None:
            peaks, sizes = peaks + (request_peak_mb,), sizes + (request_size,)
        values.update(request_peaks=peaks[-WINDOW:], request_sizes=sizes[-WINDOW:], pid=os.getpid(), at=time.time())
        return MeasuredCost(**values)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "request_peaks": list(self.request_peaks), "request_sizes": list(self.request_sizes),
                "request_peak_mb": self.request_peak_mb}


_FIGURES = ("measured_mb", "peak_load_mb", "first_use_mb")


def _larger(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _plausible(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        and 0 <= value <= PLAUSIBLE_MB


def parse_record(value: Any) -> MeasuredCost:
    """One record of the file; ValueError when it holds anything a measurement cannot give."""
    if not isinstance(value, dict):
        raise ValueError("a record is not an object")
    figures: dict[str, Any] = {}
    for name in _FIGURES:
        if value.get(name) is not None:
            if not _plausible(value[name]):
                raise ValueError(f"{name} = {value[name]!r} is not a figure between 0 and {PLAUSIBLE_MB:.0f} MB")
            figures[name] = float(value[name])
    peaks = value.get("request_peaks")
    if peaks is None and value.get("request_peak_mb") is not None:  # the format before the window
        peaks = [value["request_peak_mb"]]
    peaks = peaks or []
    if not isinstance(peaks, list) or not all(_plausible(p) for p in peaks):
        raise ValueError("request_peaks is not a list of figures between 0 and "
                         f"{PLAUSIBLE_MB:.0f} MB")
    sizes = value.get("request_sizes")
    if sizes is None:  # the format before sizes: every request of unknown size
        sizes = [None] * len(peaks)
    if not isinstance(sizes, list) or len(sizes) != len(peaks) or not all(
            s is None or _plausible(s) for s in sizes):
        raise ValueError("request_sizes is not a list of sizes (or null), one per request peak")
    pid, at = value.get("pid", 0), value.get("at", 0.0)
    return MeasuredCost(**figures, request_peaks=tuple(float(p) for p in peaks[-WINDOW:]),
                        request_sizes=tuple(None if s is None else float(s) for s in sizes[-WINDOW:]),
                        pid=pid if isinstance(pid, int) else 0, at=at if _plausible_time(at) else 0.0)


def _plausible_time(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


class CostBook:
    """The shared file of measured costs, read when it changed and merged under a lock when written."""

    def __init__(self, folder: Path | None) -> None:
        self.path = folder / FILE_NAME if folder is not None else None
        self._local: dict[str, MeasuredCost] = {}  # what this process measured (kept if the file cannot be)
        self._cache: dict[str, MeasuredCost] = {}
        self._cache_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._unwritable_logged = False
        self._ignored_stamp: tuple[int, int] | None = None  # the broken file already warned about

    def get(self, key: str) -> MeasuredCost | None:
        """What anyone measured for `key`: the larger build figures, and the shared file's request window
        (every worker's requests, this one's included), or this process's own where the file cannot be written."""
        with self._lock:
            shared, local = self._read().get(key), self._local.get(key)
            written = not self._unwritable_logged
        if shared is None or local is None:
            return shared or local
        # A build measured here after a restart starts a local record with an empty window: it must not
        # hide the requests the file kept (they are what admission learns from).
        window = shared if written or shared.at > local.at else local
        newer = local if local.at >= shared.at else shared
        combined = {name: _larger(getattr(local, name), getattr(shared, name)) for name in _FIGURES}
        return MeasuredCost(**combined, request_peaks=window.request_peaks, request_sizes=window.request_sizes,
                            pid=newer.pid, at=newer.at)

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
            if shared is not None and figures.get("request_peak_mb") is None and all(
                    _larger(getattr(shared, name), value) == getattr(shared, name)
                    for name, value in figures.items() if name not in ("request_peak_mb", "request_size")):
                return shared  # nothing grew: the file already says it
            try:
                return self._update_file(key, lambda record: record.merged(**figures))
            except OSError as exc:
                self._say_unwritable(exc)
                return local

    def record_boot(self, used_mb: float) -> None:
        """Persist the service's memory when a worker booted: what it holds with a fresh worker (the latest counts)."""
        boot = MeasuredCost(measured_mb=used_mb, pid=os.getpid(), at=time.time())
        with self._lock:
            self._local[WORKER_BOOT_KEY] = boot
            if self.path is None:
                return
            try:
                self._update_file(WORKER_BOOT_KEY, lambda record: boot)
            except OSError as exc:
                self._say_unwritable(exc)

    def boot_mb(self) -> float | None:
        """The service's memory at the last worker boot persisted, None before any was measured."""
        with self._lock:
            record = self._local.get(WORKER_BOOT_KEY) or self._read().get(WORKER_BOOT_KEY)
        return record.measured_mb if record is not None else None

    def _update_file(self, key: str, update: Any) -> MeasuredCost:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            records = self._load_file()
            merged = update(records.get(key, MeasuredCost()))
            records[key] = merged
            self._write(records)
        return merged

    def _say_unwritable(self, exc: OSError) -> None:
        if not self._unwritable_logged:
            self._unwritable_logged = True
            logger.warning("cannot write measured costs to %s (%s): other workers and restarts will "
                           "admit from estimates", self.path, exc)

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
        """Every record, or none when the file is broken anywhere (warned once per broken version)."""
        assert self.path is not None
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("the file is not a JSON object")
            return {str(key): parse_record(value) for key, value in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # broken or implausible: admit from estimates, not from it
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._ignored_stamp:
                self._ignored_stamp = stamp
                logger.warning("ignoring %s: %s; admission uses estimates until new measurements replace it",
                               self.path, exc)
            return {}

    def _write(self, records: dict[str, MeasuredCost]) -> None:
        assert self.path is not None
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({k: v.to_json() for k, v in sorted(records.items())}, indent=1) + "\n",
                       encoding="utf-8")
        os.replace(tmp, self.path)  # atomic: readers see the old file or the new one, never half
