"""The recycle decision: when a model is refused, would replacing this worker by a fresh one admit it.

Pure functions of a snapshot; the Gate (backend.registry.gate) reads the snapshot, asks Gunicorn
for the replacement and says so in the refusal. Idle models never block a recycle (a fresh worker
builds what it needs again); requests in flight do (the replacement would wait for them anyway,
and their memory is not this request's to take). What a fresh worker holds is measured: the
service's memory when this worker booted (`fresh_used_mb`), not derived from what this one holds.
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

    can_recycle: bool  # a Gunicorn worker that knows its boot figure and how to ask for a replacement
    now: float  # seconds since the epoch
    requested_at: float | None  # when this worker last asked for a replacement
    ttl_s: int  # MODEL_TTL_S: at most one request per this many seconds (<= 0: once per worker)
    others_loaded: tuple[str, ...]  # other models loaded or loading (shown; they never block)
    others_in_use: tuple[str, ...]  # other models holding requests
    used_mb: float  # what admission counted as used
    fresh_used_mb: float  # what the service would count as used with this worker fresh (measured at boot)
    need_fresh_mb: float  # what the model would add in a fresh worker (its runtime's import included)
    limit_mb: float  # admission's line


def decide_recycle(snapshot: RecycleSnapshot) -> Recycle:
    """Ask for a fresh worker when no other request is in flight and a fresh worker would admit the model."""
    s = snapshot
    if not s.can_recycle:
        return Recycle.NO  # not a Gunicorn worker (tests, flask run): nobody to replace it
    if s.requested_at is not None:
        window = s.ttl_s if s.ttl_s > 0 else float("inf")
        if s.now - s.requested_at < window:
            return Recycle.ASKED
    if s.others_in_use:
        return Recycle.NO
    if not recycle_helps(used_mb=s.used_mb, fresh_used_mb=s.fresh_used_mb, need_fresh_mb=s.need_fresh_mb,
                         limit_mb=s.limit_mb):
        return Recycle.NO
    return Recycle.ASK


def recycle_helps(*, used_mb: float, fresh_used_mb: float, need_fresh_mb: float, limit_mb: float) -> bool:
    """Whether a fresh worker would admit a model this one must refuse with nothing in flight.

    A replacement gives back all this worker holds above its boot (models, retained heap, runtimes)
    but must import the runtime again (`need_fresh_mb` includes that). When even a fresh worker
    could not fit the model (other workers hold the memory), or it would hold no less than this one,
    recycling would only cost a restart, so the answer is no.
    """
    return fresh_used_mb < used_mb and fresh_used_mb + need_fresh_mb <= limit_mb


def fresh_used_mb(*, used_mb: float, own_growth_mb: float, boot_used_mb: float, workers: int) -> float:
    """What the service would hold with this worker replaced by a fresh one.

    One worker: the service's memory measured at this worker's boot (the master and a fresh
    worker). More: that, plus what the other workers grew since (the growth not this worker's own).
    """
    if workers <= 1:
        return boot_used_mb
    return max(boot_used_mb, used_mb - own_growth_mb)
