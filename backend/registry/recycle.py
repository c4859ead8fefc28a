"""The recycle decision: when a model is refused, would replacing this worker by a fresh one admit it.

Pure functions of a snapshot; the Gate (backend.registry.gate) reads the snapshot, asks Gunicorn
for the replacement and says so in the refusal.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Recycle(str, Enum):
    NO = "no"  # keep this worker: refuse as usual
    ASKED = "asked"  # a replacement was asked for within the window: it is on its way
    ASK = "ask"  # ask for a replacement now


@dataclass(frozen=True)
class RecycleSnapshot:
    """What the recycle decision reads, taken when a model is refused."""

    can_recycle: bool  # a Gunicorn worker that knows its boot RSS and how to ask for a replacement
    now: float  # seconds since the epoch
    requested_at: float | None  # when this worker last asked for a replacement
    ttl_s: int  # MODEL_TTL_S: at most one request per this many seconds (<= 0: once per worker)
    others_loaded: tuple[str, ...]  # other models loaded or loading
    others_in_use: tuple[str, ...]  # other models holding requests
    used_mb: float  # what admission counted as used
    retained_mb: float  # this worker's RSS above its boot RSS
    need_fresh_mb: float  # what the model would add in a fresh worker (its runtime's import included)
    limit_mb: float  # admission's line


def decide_recycle(snapshot: RecycleSnapshot) -> Recycle:
    """Ask for a fresh worker when nothing else is loaded or in use and one would admit the model."""
    s = snapshot
    if not s.can_recycle:
        return Recycle.NO  # not a Gunicorn worker (tests, flask run): nobody to replace it
    if s.requested_at is not None:
        window = s.ttl_s if s.ttl_s > 0 else float("inf")
        if s.now - s.requested_at < window:
            return Recycle.ASKED
    if s.others_loaded or s.others_in_use:
        return Recycle.NO
    if not recycle_helps(used_mb=s.used_mb, retained_mb=s.retained_mb, need_fresh_mb=s.need_fresh_mb,
                         limit_mb=s.limit_mb):
        return Recycle.NO
    return Recycle.ASK


def recycle_helps(*, used_mb: float, retained_mb: float, need_fresh_mb: float, limit_mb: float) -> bool:
    """Whether a fresh worker would admit a model this one must refuse with nothing else loaded or in use.

    `retained_mb` is this worker's memory above what it held when it booted: pages the allocator
    kept after earlier models were unloaded, or a leak, plus runtimes it imported. A replacement
    gives all of it back but must import the runtime again (`need_fresh_mb` includes that). When
    even a fresh worker could not fit the model (another worker holds the memory), recycling
    would only cost a restart, so the answer is no.
    """
    return retained_mb > 0 and used_mb - retained_mb + need_fresh_mb <= limit_mb
