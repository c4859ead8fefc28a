"""Gate: admits builds and jobs against the budget, makes room for them, and refuses with the reason.

One admission and build at a time in this process (the build lock), and in the whole service (the
peers' admission lock): two workers admitting together would both read the same free memory. The
decisions are pure functions (backend.registry.admission, backend.registry.recycle); the Gate
reads what they need, evicts the victims one at a time, asks Gunicorn for a fresh worker, and
words the refusals. It also keeps what jobs and transient allocations have reserved.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from backend.errors import BudgetExceeded
from backend.memory import readings
from backend.registry.admission import Admission, ModelFigures, Outcome, admit
from backend.registry.lifecycle import Lifecycle, ModelHandle
from backend.registry.need import Need
from backend.registry.peers import Peers
from backend.registry.policy import Policy
from backend.registry.recycle import Recycle, RecycleSnapshot, decide_recycle, fresh_used_mb
from backend.registry.spec import ModelState

logger = logging.getLogger(__name__)

#: Retry-After while this worker is being replaced: with nothing in flight it exits at once and a
#: fresh gthread worker answers within a second (its listen socket is the master's, so nothing is
#: refused meanwhile). The request is not retried inside the worker: its memory goes back to the OS
#: only when its process exits, so the client retries (docs/BENCHMARKS.md, issue 24).
RECYCLE_RETRY_AFTER_S = 1


class Gate:
    """The admission locks, make-room and wait-idle, refusals, the recycle request, job reservations."""

    def __init__(self, policy: Policy, *, memory: readings.ServiceMemory, peers: Peers, lifecycle: Lifecycle,
                 figures: Callable[[], list[ModelFigures]], emit: Callable[..., None],
                 publish: Callable[[], None], bump_epoch: Callable[[], int]) -> None:
        self.policy = policy
        self.memory = memory
        self.peers = peers
        self._lifecycle = lifecycle  # waits for models to go idle, evicts them
        self._figures = figures  # what admission knows of every model, read now
        self._emit = emit
        self._publish = publish  # tell the other workers what is reserved here
        self._bump_epoch = bump_epoch
        self._build_lock = threading.Lock()  # one build at a time: admission is never raced
        self._lock = threading.Lock()
        self._jobs_mb: dict[str, float] = {}  # reserved for jobs running in child processes (reserve_job)
        # Set by arm_recycle() in a Gunicorn worker: its boot RSS and how to ask for a replacement.
        self._recycle: Callable[[], None] | None = None
        self._boot_rss_mb: float | None = None
        self._boot_used_mb: float | None = None  # the service's memory when this worker booted (measured)
        self._recycle_requested_at: float | None = None

    def budget_mb(self) -> float:
        """The budget, lowered to the cgroup's limit when the instance allows less."""
        limit = self.memory.limit_mb()
        return min(self.policy.budget_mb, limit) if limit else self.policy.budget_mb

    def limit_mb(self) -> float:
        return self.budget_mb() - self.policy.margin_mb

    def building(self) -> bool:
        """Whether a build (or a job's admission) holds the admission locks now."""
        return self._build_lock.locked()

    def arm_recycle(self, recycle: Callable[[], None] | None, boot_rss_mb: float, boot_used_mb: float) -> None:
        self._recycle, self._boot_rss_mb, self._boot_used_mb = recycle, boot_rss_mb, boot_used_mb

    def fresh_used_mb(self, used_mb: float) -> float | None:
        """What the service would hold with this worker replaced by a fresh one; None outside a Gunicorn worker."""
        if self._recycle is None or self._boot_rss_mb is None or self._boot_used_mb is None:
            return None
        return fresh_used_mb(used_mb=used_mb, own_growth_mb=max(0.0, readings.rss_mb() - self._boot_rss_mb),
                             boot_used_mb=self._boot_used_mb, workers=self.policy.workers)

    # --- admission -------------------------------------------------------------------------------
    @contextmanager
    def admitted(self, name: str, need_mb: Callable[[], float], *, wait_s: float,
                 fresh_need_mb: Callable[[], float] | None = None) -> Iterator[Admission]:
        """Make room for `name` and yield the verdict with the admission locks held (the caller builds or refuses).

        While only models in use stand in the way (Outcome.WAIT), wait up to `wait_s` for them to
        finish, outside the locks: new requests for them wait too (they are draining) until the
        caller's block ends, so a steady stream of them cannot starve this build; they then build
        them again in turn. `fresh_need_mb`: what the model would add in a fresh worker; when that
        fits, idle models are evicted even if that alone is not enough (the refusal then recycles).
        """
        deadline = time.monotonic() + wait_s
        drained: list[ModelHandle] = []
        try:
            while True:
                with self._build_lock, self.peers.admission():
                    admission = self._make_room(name, need_mb(), fresh_need_mb() if fresh_need_mb else None)
                    remaining = deadline - time.monotonic()
                    if admission.outcome is not Outcome.WAIT or remaining <= 0:
                        yield admission
                        return
                self._lifecycle.wait_idle(admission.victims, drained, remaining)
        finally:
            if drained:
                self._lifecycle.end_drain(drained)

    def _admission(self, name: str, need_mb: float, limit_mb: float, fresh_need_mb: float | None) -> Admission:
        with self._lock:
            jobs_mb = sum(self._jobs_mb.values())
        used_mb = self.memory.used_mb() + jobs_mb
        figures, reserved = self._figures(), self.peers.reserved_mb()
        fresh = self.fresh_used_mb(used_mb) if fresh_need_mb is not None else None
        # A fresh worker builds the pinned models again: they count against it too.
        pinned = sum(m.resident_mb + m.headroom_mb for m in figures if m.pinned and m.loaded and m.name != name)
        fresh_fits = fresh is not None and fresh + reserved + pinned + (fresh_need_mb or 0.0) <= limit_mb
        return admit(figures, name=name, need_mb=need_mb, used_mb=used_mb, limit_mb=limit_mb,
                     reserved_mb=reserved, fresh_fits=fresh_fits)

    def _make_room(self, name: str, need_mb: float, fresh_need_mb: float | None = None) -> Admission:
        """Evict what admission names (LRU first, asking again after each) and return the last verdict."""
        limit = self.limit_mb()
        admission = self._admission(name, need_mb, limit, fresh_need_mb)
        if admission.outcome is Outcome.EVICT:
            for victim in admission.victims:
                self._lifecycle.unload(self._lifecycle.handles[victim], reason="evicted")
                admission = self._admission(name, need_mb, limit, fresh_need_mb)
                if admission.fits:
                    break
        return admission

    # --- refusal ---------------------------------------------------------------------------------
    def refuse(self, handle: ModelHandle, need: Need, admission: Admission, *, request_only: bool = False) -> NoReturn:
        """Raise BudgetExceeded for a model that does not fit, asking for a fresh worker first if that helps.

        `request_only`: the model is loaded and held by this request; only its activations were asked for.
        """
        name, used = handle.spec.name, admission.used_mb
        budget, margin = self.budget_mb(), self.policy.margin_mb
        needed = need.request.mb if request_only else need.mb
        what = (f"a request of model {name!r} ({_size(need)}) needs about {needed:.0f} MB for its activations"
                if request_only else f"model {name!r} needs about {needed:.0f} MB")
        recycling = self._recycle_if_it_helps(handle, need, admission, self.limit_mb(), request_only=request_only)
        self._emit("refuse", name, mb=needed)
        logger.warning("event=model_refused model=%s needed_mb=%.0f needed_from=%r request_size=%s request_mb=%.0f "
                       "request_rule=%r used_mb=%.0f budget_mb=%.0f margin_mb=%.0f recycling=%s", name, needed,
                       need.source, need.request.size, need.request.mb, need.request.rule, used, budget, margin,
                       recycling)
        holders = self.holders(handle, own_requests=handle.in_use - (1 if request_only else 0))
        facts = dict(model=name, needed_mb=round(needed), used_mb=round(used), budget_mb=round(budget),
                     margin_mb=round(margin), request_mb=round(need.request.mb), request_rule=need.request.rule)
        if recycling:
            raise BudgetExceeded(
                f"{what} but only {admission.free_mb:.0f} MB of the {budget:.0f} MB "
                f"budget is free, held by {holders}; nothing is in flight, so this worker is being "
                f"replaced by a fresh one that fits it: retry in {RECYCLE_RETRY_AFTER_S} s",
                headers={"Retry-After": str(RECYCLE_RETRY_AFTER_S)}, **facts, recycling=True)
        waited = (f"; {', '.join(admission.victims)} did not finish within {self.policy.queue_timeout_s:g} s "
                  "(QUEUE_TIMEOUT_S)" if admission.outcome is Outcome.WAIT else "")
        raise BudgetExceeded(
            f"{what} but only {admission.free_mb:.0f} MB of the "
            f"{budget:.0f} MB budget is free, held by {holders}{waited}; retry later",
            headers={"Retry-After": str(self.policy.retry_after_s)}, **facts)

    def holders(self, handle: ModelHandle, own_requests: int = 0) -> str:
        """What holds the memory a refused model would need: models in use, idle models, this worker's
        retained heap and runtimes, other workers. `own_requests`: the refused model's other requests in flight."""
        parts, loaded_mb = [], 0.0
        if own_requests > 0:
            parts.append(f"{handle.spec.name} itself (in use by {own_requests} other request(s))")
        for other in self._lifecycle.handles.values():
            if other is handle or other.state is not ModelState.LOADED:
                continue
            loaded_mb += other.measured_mb or 0.0
            what = f"{other.in_use} request(s)" if other.in_use else "idle"
            parts.append(f"{other.spec.name} ({'in use by ' if other.in_use else ''}{what}, "
                         f"{other.measured_mb or 0.0:.0f} MB)")
        if self._boot_rss_mb is not None:
            retained = max(0.0, readings.rss_mb() - self._boot_rss_mb - loaded_mb - (
                (handle.measured_mb or 0.0) if handle.state is ModelState.LOADED else 0.0))
            parts.append(f"this worker's retained heap and runtimes ({retained:.0f} MB above its boot)")
        reserved = self.peers.reserved_mb()
        if reserved > 0:
            parts.append(f"other workers' head-room ({reserved:.0f} MB)")
        with self._lock:
            jobs = sum(self._jobs_mb.values())
        if jobs > 0:
            parts.append(f"jobs and uploads in flight ({jobs:.0f} MB)")
        return "; ".join(parts) if parts else "the service itself (nothing loaded)"

    def recycle_snapshot(self, handle: ModelHandle, need: Need, admission: Admission,
                         limit_mb: float, *, request_only: bool = False) -> RecycleSnapshot:
        """What the recycle decision reads, now (`request_only`: the refused request holds the model itself)."""
        can_recycle = self._recycle is not None and self._boot_rss_mb is not None
        now = time.time()
        with self._lock:
            requested_at = self._recycle_requested_at
        loaded, in_use = self._lifecycle.others_held(handle)
        if handle.in_use > (1 if request_only else 0):  # its own other requests are in flight too
            in_use = (*in_use, handle.spec.name)
        fresh = self.fresh_used_mb(admission.used_mb)
        return RecycleSnapshot(can_recycle=can_recycle and fresh is not None, now=now, requested_at=requested_at,
                               ttl_s=self.policy.ttl_s, others_loaded=loaded, others_in_use=in_use,
                               used_mb=admission.used_mb, fresh_used_mb=fresh if fresh is not None else admission.used_mb,
                               need_fresh_mb=need.fresh_mb, limit_mb=limit_mb)

    def _recycle_if_it_helps(self, handle: ModelHandle, need: Need, admission: Admission, limit_mb: float, *,
                             request_only: bool = False) -> bool:
        """Ask for a fresh worker when the recycle decision says so; True while this worker is being replaced."""
        snapshot = self.recycle_snapshot(handle, need, admission, limit_mb, request_only=request_only)
        verdict = decide_recycle(snapshot)
        if verdict is not Recycle.ASK:
            return verdict is Recycle.ASKED
        assert self._recycle is not None
        with self._lock:
            self._recycle_requested_at = snapshot.now
        retained = snapshot.used_mb - snapshot.fresh_used_mb
        logger.warning("event=worker_recycle pid=%d reason=memory_retained model=%s retained_mb=%.0f need_mb=%.0f "
                       "used_mb=%.0f fresh_used_mb=%.0f limit_mb=%.0f: asking Gunicorn for a fresh worker",
                       os.getpid(), handle.spec.name, retained, need.fresh_mb, admission.used_mb,
                       snapshot.fresh_used_mb, limit_mb)
        self._emit("recycle", handle.spec.name, retained_mb=retained)
        self._recycle()
        return True

    # --- jobs run in child processes (backend.jobs), and transient allocations ----------------------
    def jobs(self) -> dict[str, float]:
        """What each job (or transient allocation) has reserved now, MB."""
        with self._lock:
            return dict(self._jobs_mb)

    def admit_job(self, name: str, need_mb: float, *, wait: bool = False) -> bool:
        """Make room for a job process of `need_mb` (idle models evicted LRU first) and reserve it; False: not now.

        `wait`: while only models in use stand in the way, wait for them (up to QUEUE_TIMEOUT_S).
        A job's runner does not: it retries on its own and must not hold requests back meanwhile.
        """
        with self.admitted(name, lambda: need_mb, wait_s=self.policy.queue_timeout_s if wait else 0) as admission:
            if admission.fits:
                self.reserve_job(name, need_mb)
            return admission.fits

    def reserve_job(self, name: str, mb: float) -> None:
        """Keep `mb` reserved for job `name` beyond what its process holds now (0 = it ended); admissions count it."""
        with self._lock:
            if mb > 0:
                self._jobs_mb[name] = mb
            else:
                self._jobs_mb.pop(name, None)
        self._publish()

    @contextmanager
    def transient(self, what: str, need_mb: float) -> Iterator[None]:
        """Memory a request allocates outside any model (decoding an upload), admitted like a model's.

        Idle models are evicted LRU first if that makes room; if nothing does, 503
        memory_budget_exceeded with Retry-After, before a byte is allocated. The reservation is
        held (and counted by every admission, in every worker) until the block ends.
        """
        label = f"{what}-{threading.get_ident()}-{time.monotonic_ns()}"
        if not self.admit_job(label, need_mb, wait=True):
            budget = self.budget_mb()
            raise BudgetExceeded(
                f"{what} needs about {need_mb:.0f} MB and the {budget:.0f} MB budget has not that much free now "
                "(models in use cannot be evicted); retry later",
                headers={"Retry-After": str(self.policy.retry_after_s)},
                needed_mb=round(need_mb, 1), budget_mb=round(budget), margin_mb=round(self.policy.margin_mb))
        self._bump_epoch()  # the decode allocates beside whatever is being measured now
        try:
            yield
        finally:
            self.reserve_job(label, 0)


def _size(need: Need) -> str:
    size = need.request.size
    return "size unknown" if size is None else f"size {size:g}"
