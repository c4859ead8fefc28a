"""Admission: may a model be built now, after evicting which idle models, or must it be refused.

A pure decision over what the registry knows of each model and one reading of the service's
memory. The registry does the I/O around it (reads memory, unloads the victims one at a time,
asks again after each) and builds or refuses as told. Loaded models keep head-room for their
own requests' activations: admitting a model into memory that their next request will need is
what OOM-kills a worker, so that head-room counts as used.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Outcome(str, Enum):
    FITS = "fits"  # build now
    EVICT = "evict"  # build once enough of `victims` are unloaded, least recently used first
    WAIT = "wait"  # fits once `victims`, models in use now, go idle and are evicted with every idle one
    REFUSE = "refuse"  # cannot fit even with every unpinned model evicted


@dataclass(frozen=True)
class ModelFigures:
    """What admission knows of one registered model."""

    name: str
    loaded: bool
    in_use: int
    pinned: bool
    last_used: float | None
    resident_mb: float  # measured steady size; 0 until measured
    headroom_mb: float  # memory its next request may need above the steady size


@dataclass(frozen=True)
class Admission:
    outcome: Outcome
    used_mb: float  # memory in use plus the head-room kept for the other loaded models
    free_mb: float  # what is left under the limit, never negative
    victims: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return self.outcome is Outcome.FITS


def admit(models: Iterable[ModelFigures], *, name: str, need_mb: float, used_mb: float, limit_mb: float,
          reserved_mb: float = 0.0, fresh_fits: bool = False) -> Admission:
    """Decide whether model `name`, expected to add `need_mb`, fits under `limit_mb` now.

    `used_mb` is the service's memory as read now; `reserved_mb` the head-room other workers keep
    for their loaded models' next requests (it counts as used, and none of it can be evicted from
    here). Idle, unpinned, loaded models other than `name` are the only candidates for eviction;
    models in use are never evicted. EVICT is answered only when evicting every candidate would
    make room, so nothing is unloaded in vain. When only models in use stand in the way, WAIT
    names the fewest of them (least recently used first) whose going idle would make room: the
    caller may wait for them to finish rather than refuse a model that fits in turn.

    `fresh_fits`: the model would fit a fresh worker (what the service held when this worker
    booted, measured). Then, with no request in flight, evicting every idle model is never in
    vain even when it is not enough: it clears the way for replacing this worker, which idle
    models must not block (issue 24: they kept a worker refusing TTS for 1,000 requests).
    """
    others = [m for m in models if m.name != name and m.loaded]
    used = used_mb + reserved_mb + sum(m.headroom_mb for m in others)
    free = max(0.0, limit_mb - used)
    if used + need_mb <= limit_mb:
        return Admission(Outcome.FITS, used, free)
    victims = sorted((m for m in others if m.in_use == 0 and not m.pinned), key=lambda m: m.last_used or 0.0)
    reclaimable = sum(m.resident_mb + m.headroom_mb for m in victims)
    if used - reclaimable + need_mb <= limit_mb:
        return Admission(Outcome.EVICT, used, free, tuple(m.name for m in victims))
    waited_for: list[str] = []
    for busy in sorted((m for m in others if m.in_use > 0 and not m.pinned), key=lambda m: m.last_used or 0.0):
        waited_for.append(busy.name)
        reclaimable += busy.resident_mb + busy.headroom_mb
        if used - reclaimable + need_mb <= limit_mb:
            return Admission(Outcome.WAIT, used, free, tuple(waited_for))
    if fresh_fits and victims and not any(m.in_use for m in others):
        return Admission(Outcome.EVICT, used, free, tuple(m.name for m in victims))
    return Admission(Outcome.REFUSE, used, free)

