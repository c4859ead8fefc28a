"""ModelRegistry: owns model lifetime and decides what is loaded, against a measured memory budget.

Pipelines register a ModelSpec (a factory, an availability check and an estimate of what it
costs); nothing is built until first use. `lease(name)` / `acquire(name)` builds the model once
however many requests arrive together (single-flight) and counts users so a model in use is never
evicted. Before any build the model's files are checked (a model that cannot be served is
refused with 503 model_unavailable before anything is evicted), then it is admitted against
the budget: idle models are evicted least-recently-used first; when only models in use stand in
the way, the build waits for them to finish (new requests for them held back meanwhile, at most
QUEUE_TIMEOUT_S) and evicts them, so models too big to share the budget serve in turn; and if
the model still cannot fit the request is refused with BudgetExceeded (HTTP 503 + Retry-After)
instead of letting the kernel OOM-kill the worker, after asking for a fresh worker when that
would admit it. What a model costs is measured (backend.registry.measure) and shared by every
worker (backend.registry.costs); before that, its estimate.

This class wires the objects that do the work, and is what get_registry() returns: Lifecycle
(handles, single-flight builds, use counts, unloads, the TTL), Slots (concurrency and queue per
model), Gate (admission locks, eviction, refusals, recycling, job reservations) and Meter (the
measurements and their epoch). None of them imports this module; the decisions they act on are
pure functions (backend.registry.admission, backend.registry.recycle).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from backend.errors import ApiError, ModelBusy, ModelDisabled, ModelUnavailable, NotFound
from backend.memory import readings
from backend.registry import readiness as report
from backend.registry.admission import ModelFigures
from backend.registry.costs import CostBook
from backend.registry.events import EventListener, EventLog, Listeners
from backend.registry.gate import Gate
from backend.registry.lease import Lease
from backend.registry.lifecycle import Lifecycle, ModelHandle
from backend.registry.measure import Meter
from backend.registry.need import Need, headroom_mb, model_figures, need_for
from backend.registry.peers import Peers
from backend.registry.policy import Policy, Setting
from backend.registry.request_cost import RequestCost
from backend.registry.slots import Slots
from backend.registry.spec import ModelSpec, ModelState

if TYPE_CHECKING:  # typing only: the registry never imports a pipeline
    from backend.pipelines.base import Pipeline

logger = logging.getLogger(__name__)

EXTENSION = "registry"  # the key in app.extensions; read only through get_registry()


def get_registry(app: Flask | None = None) -> ModelRegistry:
    """The registry of `app`, by default of the app handling the current request."""
    return (app or current_app).extensions[EXTENSION]


class ModelRegistry:
    """Owns model lifetime: lazy single-flight builds, use counts, TTL, LRU eviction, admission."""

    budget_mb = Setting()
    margin_mb = Setting()
    ttl_s = Setting()
    retry_after_s = Setting()
    queue_timeout_s = Setting()
    max_queue = Setting()
    workers = Setting()

    def __init__(self, budget_mb: float, *, margin_mb: float = 48, ttl_s: int = 300,
                 retry_after_s: int = 30, queue_timeout_s: float = 30, max_queue: int = 64, workers: int = 1,
                 memory: readings.ServiceMemory | None = None, costs: CostBook | None = None,
                 peers: Peers | None = None) -> None:
        self.policy = Policy(float(budget_mb), float(margin_mb), ttl_s, retry_after_s, queue_timeout_s, max_queue,
                             workers)
        self.memory = memory or readings.ServiceMemory()
        self.costs = costs or CostBook(None)  # None: measurements stay in this process
        self.peers = peers or Peers(None)  # None: this process admits alone
        self.listeners = Listeners()
        self.events = EventLog()  # recent events for the operator panel (GET /api/operator)
        self.subscribe(self.events.record)
        self.subscribe(self._forget_availability)  # a state change: check the model's files again
        self.meter = Meter(self.costs)
        self.slots = Slots(self.policy)
        self.lifecycle = Lifecycle(self.policy, bump_epoch=self.meter.bump, emit=self.listeners.emit,
                                   publish=self._publish_reserved)
        self.gate = Gate(self.policy, memory=self.memory, peers=self.peers, lifecycle=self.lifecycle,
                         figures=self._figures, emit=self.listeners.emit, publish=self._publish_reserved,
                         bump_epoch=self.meter.bump)
        # Set by start_worker() in a Gunicorn worker: its boot figures.
        self.boot_rss_mb: float | None = None
        self.boot_pss_mb: float | None = None

    def init_app(self, app: Flask) -> None:
        """Make this the registry of `app` (get_registry() finds it)."""
        app.extensions[EXTENSION] = self

    # --- registration and introspection ------------------------------------------------------
    def register(self, spec: ModelSpec) -> None:
        self.lifecycle.add(spec)
        self.slots.add(spec)

    def subscribe(self, listener: EventListener) -> None:
        """Call listener(event, model, facts) on load, unload, evict and refuse."""
        self.listeners.subscribe(listener)

    def _forget_availability(self, event: str, name: str, facts: dict[str, Any]) -> None:
        handle = self.lifecycle.handles.get(name)
        if handle is not None:
            report.forget_availability(handle.spec)

    @property
    def names(self) -> list[str]:
        return list(self.lifecycle.handles)

    @property
    def effective_budget_mb(self) -> float:
        """The budget, lowered to the cgroup's limit when the instance allows less."""
        return self.gate.budget_mb()

    def _handle_or_404(self, name: str) -> ModelHandle:
        handle = self.lifecycle.handles.get(name)
        if handle is None:
            raise NotFound(f"no model named {name!r}; known: {', '.join(self.lifecycle.handles)}")
        return handle

    def state(self, name: str) -> ModelState:
        return self._handle_or_404(name).state

    def is_enabled(self, name: str) -> bool:
        handle = self.lifecycle.handles.get(name)
        return handle is not None and handle.spec.enabled

    def snapshot(self) -> list[dict[str, Any]]:
        """Every model with its state, whether it can be served, its cost and where that figure comes from."""
        rows = []
        for handle in self.lifecycle.handles.values():
            found, need = report.availability(handle.spec), self._need(handle)
            with self.lifecycle.lock:
                rows.append(report.snapshot_row(handle, found, need))
        return rows

    def budget_status(self) -> dict[str, Any]:
        used = self.memory.used_mb()
        budget = self.effective_budget_mb
        return {"budget_mb": round(budget, 1), "margin_mb": self.margin_mb, "used_mb": round(used, 1),
                "used_percent": round(100 * used / budget, 1), "source": self.memory.source,
                "process_rss_mb": round(readings.rss_mb(), 1),
                # What the service held when a worker last booted (measured, persisted): the figure a
                # recycle decision compares with, as a fresh worker meets it.
                "fresh_worker_used_mb": _round(self.costs.boot_mb())}

    def readiness(self) -> list[dict[str, Any]]:
        """Per model: can it be served now, and if not, why and the one command that makes it so."""
        limit, baseline, budget = self.gate.limit_mb(), self._idle_baseline_mb(), self.effective_budget_mb
        return [report.readiness_row(h, available=partial(report.availability, h.spec), need=partial(self._need, h),
                                     limit_mb=limit, baseline_mb=baseline, budget_mb=budget)
                for h in self.lifecycle.handles.values()]

    def log_readiness(self) -> None:
        """One line per model: servable now, or why not and the one command that makes it so."""
        report.log_rows(self.readiness())

    def _idle_baseline_mb(self) -> float:
        return report.idle_baseline_mb(self.memory, self.boot_pss_mb, self.workers)

    # --- jobs run in child processes (backend.jobs) ------------------------------------------------
    def job_ever_fits(self, need_mb: float) -> tuple[bool, float]:
        """Whether a job process of `need_mb` could ever run beside this service, and the most that is ever free."""
        free = max(0.0, self.gate.limit_mb() - self._idle_baseline_mb())
        return need_mb <= free, free

    def admit_job(self, name: str, need_mb: float, *, wait: bool = False) -> bool:
        """Make room for a job process of `need_mb` and reserve it; False: not now (see Gate.admit_job)."""
        return self.gate.admit_job(name, need_mb, wait=wait)

    def reserve_job(self, name: str, mb: float) -> None:
        """Keep `mb` reserved for job `name` beyond what its process holds now (0 = it ended); admissions count it."""
        self.gate.reserve_job(name, mb)

    def transient(self, what: str, need_mb: float) -> AbstractContextManager[None]:
        """Memory a request allocates outside any model (decoding an upload), admitted like a model's (Gate.transient)."""
        return self.gate.transient(what, need_mb)

    # --- use -----------------------------------------------------------------------------------
    def lease(self, name: str, size: float | None = None, *, sized_later: bool = False) -> Lease:
        """Check a pipeline out for one request of `size` (building it if needed); the caller must release() it.

        `size` is what the request asks (backend.registry.request_cost; None = unknown, counted as the
        largest): room is made for its activations before it runs. `sized_later`: the size is known
        only once the loaded model has read the request; the caller then calls Lease.admit(size)
        before the model runs.
        """
        handle = self._handle_or_404(name)
        pipeline = self._ensure_loaded(handle, hold=True, size=size, sized_later=sized_later)
        try:
            slot = self.slots.take(handle.spec)
        except ModelBusy:
            self.lifecycle.checkin(handle, served=False)
            raise
        if not sized_later:
            try:
                self._admit_request(handle, size)
            except BaseException:
                slot.release()
                self.lifecycle.checkin(handle, served=False)
                raise
        self.lifecycle.count_use(handle)
        epoch, start_rss_mb = self.meter.start_request(self.gate.building)
        return Lease(name, pipeline, admit=partial(self._admit_request, handle),
                     on_release=partial(self._release, handle, slot, epoch, start_rss_mb),
                     size=size, sized=not sized_later)

    @contextmanager
    def acquire(self, name: str, size: float | None = None) -> Iterator[Pipeline]:
        """`with registry.acquire("tts") as pipe:` a model that cannot be evicted while in use (see lease)."""
        lease = self.lease(name, size)
        try:
            yield lease.pipeline
        finally:
            lease.release()

    def load(self, name: str) -> None:
        """Build a model now (admin endpoint, pinned models): not a use, and takes no request slot."""
        handle = self._handle_or_404(name)
        self._ensure_loaded(handle, hold=False)
        self.lifecycle.touch(handle)
        if self.ttl_s == 0 and not handle.spec.pinned:
            self.lifecycle.unload(handle, reason="ttl")

    def unload(self, name: str) -> bool:
        """Unload now (admin); False if it was not loaded. A model in use is refused with 409."""
        return self.lifecycle.unload_now(self._handle_or_404(name))

    def require_available(self, name: str) -> None:
        """503 model_unavailable naming the fix when a model's files or runtime are missing; else nothing."""
        handle = self._handle_or_404(name)
        if not handle.spec.enabled:
            raise ModelDisabled(f"model {name!r} is disabled by configuration", model=name)
        availability = report.availability(handle.spec, recheck_missing=True)
        if not availability.servable:
            self.listeners.emit("unavailable", name)
            raise ModelUnavailable(f"model {name!r} cannot be served: {availability.reason}; to fix: {availability.fix}",
                                   model=name, fix=availability.fix)

    def _ensure_loaded(self, handle: ModelHandle, *, hold: bool, size: float | None = None,
                       sized_later: bool = False) -> Pipeline:
        name = handle.spec.name
        if not handle.spec.enabled:
            raise ModelDisabled(f"model {name!r} is disabled by configuration", model=name)
        self.lifecycle.ensure_sweeper()
        if handle.state is not ModelState.LOADED:
            self.require_available(name)  # nothing is evicted or built for a model that cannot be served
        return self.lifecycle.hold_or_build(handle, hold=hold, build=partial(self._build, size=size, sized_later=sized_later),
                                            join_queue=self.slots.join, leave_queue=self.slots.leave)

    def _release(self, handle: ModelHandle, slot: threading.Semaphore, epoch: int, start_rss_mb: float | None,
                 size: float | None, ran: bool) -> None:
        # Measured while the slot is still held: no other request of this model has started yet.
        if self.meter.finish_request(handle, epoch, start_rss_mb, size=size, ran=ran):
            self._publish_reserved()
        slot.release()
        self.lifecycle.checkin(handle, served=True)

    # --- cost, build ---------------------------------------------------------------------------------
    def _need(self, handle: ModelHandle, size: float | None = None, *, sized_later: bool = False) -> Need:
        """What admitting `handle` for a request of `size` adds now (and the key its measured costs are shared
        under, set on it)."""
        handle.key = handle.cost_key()
        return need_for(handle.spec, handle.key, self.costs, size, sized_later=sized_later)

    def _figures(self) -> list[ModelFigures]:
        return [model_figures(h) for h in list(self.lifecycle.handles.values())]

    def _admit_request(self, handle: ModelHandle, size: float | None) -> None:
        """Make room for the activations of one request of `size` to the loaded model `handle` (held by it).

        Nothing to do when its admission already made room for as much (the usual case: one check,
        no lock); else admitted like a build, with the model's own memory already in use: idle models
        evicted, models in use waited for, or BudgetExceeded (a fresh worker asked for when that helps).
        """
        need = self._need(handle, size)
        handle.last_request = need.request
        if self._covered(handle, need):
            return
        with self.gate.admitted(handle.spec.name, lambda: self._need(handle, size).request.mb,
                                wait_s=self.queue_timeout_s,
                                fresh_need_mb=lambda: self._need(handle, size).fresh_mb) as admission:
            need = self._need(handle, size)
            handle.last_request = need.request
            if self._covered(handle, need):
                return  # another request made as much room meanwhile
            if not admission.fits:
                self.gate.refuse(handle, need, admission, request_only=True)
            with self.lifecycle.lock:
                handle.admitted = need.request
            self._publish_reserved()

    @staticmethod
    def _covered(handle: ModelHandle, need: Need) -> bool:
        return handle.admitted is not None and handle.admitted.mb >= need.request.mb

    def _publish_reserved(self) -> None:
        """Tell the other workers the head-room this one's loaded models keep."""
        loaded = self.lifecycle.loaded()
        jobs = {f"job:{name}": round(mb, 1) for name, mb in self.gate.jobs().items()}
        self.peers.publish({**{h.spec.name: round(headroom_mb(h), 1) for h in loaded}, **jobs})

    def _build(self, handle: ModelHandle, hold: bool, *, size: float | None, sized_later: bool) -> Pipeline:
        """Admit, build and measure `handle` for a request of `size`; it is LOADED (and held once if `hold`)
        before the admission locks go."""
        name = handle.spec.name
        need_now = partial(self._need, handle, size, sized_later=sized_later)
        with self.gate.admitted(name, lambda: need_now().mb, wait_s=self.queue_timeout_s,
                                fresh_need_mb=lambda: self._need(handle, size).fresh_mb) as admission:
            need = need_now()  # the figure just admitted (the locks are held)
            if not admission.fits:
                self.gate.refuse(handle, need, admission)
            try:
                pipeline, before_rss, after_rss = self.meter.build(handle)
            except Exception:
                report.forget_availability(handle.spec)  # its files may be what failed: check them again
                raise
            # Loaded (and in use) before the locks go: the next admission, here or in another worker,
            # must see it as a model it can wait for or evict, not as memory nobody owns.
            self.lifecycle.mark_loaded(handle, pipeline, hold=hold, admitted=_room_left(need, handle.measured_mb))
            self._publish_reserved()
        logger.info("event=model_loaded model=%s load_s=%.2f imports_mb=%.1f rss_before_mb=%.1f rss_after_mb=%.1f "
                    "measured_mb=%.1f anon_mb=%.1f peak_load_mb=%.1f expected_mb=%.1f expected_from=%r",
                    name, handle.load_s, handle.imports_mb, before_rss, after_rss, handle.measured_mb,
                    handle.anon_mb, handle.peak_load_mb, need.mb, need.source)
        self.listeners.emit("load", name, mb=handle.measured_mb, seconds=handle.load_s)
        return pipeline

    # --- worker life -----------------------------------------------------------------------------
    def start_worker(self, root_pid: int | None = None, recycle: Callable[[], None] | None = None) -> threading.Thread:
        """In a freshly started worker: count the whole service's memory, note the boot figures, say
        what can be served, and build pinned models. `recycle` asks the server for a fresh worker."""
        if root_pid:
            self.memory.root_pid = root_pid
        self.boot_rss_mb = readings.rss_mb()
        self.boot_pss_mb = readings.pss_mb(os.getpid())
        boot_used_mb = self.memory.used_mb()  # the fresh-worker figure: measured, and kept for the operator
        self.costs.record_boot(boot_used_mb)
        self.gate.arm_recycle(recycle, self.boot_rss_mb, boot_used_mb)
        self.lifecycle.ensure_sweeper()
        self.log_readiness()
        thread = threading.Thread(target=self.load_pinned, name="load-pinned", daemon=True)
        thread.start()
        return thread

    def load_pinned(self) -> None:
        for handle in self.lifecycle.handles.values():
            if handle.spec.pinned and handle.spec.enabled:
                try:
                    self.load(handle.spec.name)
                except ApiError as exc:
                    logger.error("pinned model %s could not be loaded: %s", handle.spec.name, exc.message)

    def pinned_ready(self) -> bool:
        return all(h.state is ModelState.LOADED for h in self.lifecycle.handles.values()
                   if h.spec.pinned and h.spec.enabled)

    def sweep_idle(self, now: float | None = None) -> list[str]:
        """Unload models idle for longer than the TTL; returns their names."""
        return self.lifecycle.sweep_idle(now)

    def shutdown(self) -> None:
        """Stop the sweeper and unload every idle model (tests; a worker's memory goes back when it exits)."""
        self.lifecycle.shutdown()
        self.peers.publish({})


def _room_left(need: Need, measured_mb: float | None) -> RequestCost:
    """What a build's admission made room for above the size it measured: its requests' activations (at least
    the request's own figure; more when the estimate was larger than the model turned out)."""
    left = need.model_mb - (measured_mb or 0.0)
    if left <= need.request.mb:
        return need.request
    return RequestCost(left, f"what its build was admitted for ({need.model_mb:.0f} MB, {need.source}) above the "
                             f"{measured_mb or 0.0:.0f} MB it measured", need.request.size)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
