"""ModelRegistry: owns model lifetime and decides what is loaded, against a measured memory budget.

Pipelines register a ModelSpec (a factory, an availability check and an estimate of what it
costs); nothing is built until first use. `lease(name)` / `acquire(name)` builds the model once
however many requests arrive together (single-flight) and counts users so a model in use is never
evicted. Before any build the model's files are checked (a model that cannot be served is
refused with 503 model_unavailable before anything is evicted), then it is admitted against
the budget (backend.registry.admission): idle models are evicted least-recently-used first; when
only models in use stand in the way, the build waits for them to finish (new requests for them
held back meanwhile, at most QUEUE_TIMEOUT_S) and evicts them, so models too big to share the
budget serve in turn; and if the model still cannot fit the request is refused with
BudgetExceeded (HTTP 503 + Retry-After) instead of letting the kernel OOM-kill the worker.

What a model costs: before it was ever measured, the catalog's estimate (its weight bytes from
its files, its family's allowance, and its runtime's import cost in this process). Each build is
measured (RSS, anonymous memory, peak) after its runtime is imported, so the figures are the
model's own; so is the first request after each load and each request's rise of peak RSS when it
runs alone. RSS and its peak are the process's, so a figure is kept only when nothing else
started, was built or was unloaded in this process while it was measured (the epoch): a request
measured across another model's build once made Kokoro look 60 MB bigger, for good. Those figures
go to the shared CostBook, which every worker (and every restart) admits from; the import part is
added only while this process has not imported the runtime.

When a model cannot be admitted although nothing else is loaded or in use, and a fresh worker
would fit it (this one holds memory its allocator kept, or leaked), the worker asks Gunicorn to
replace it once its requests finish (the recycle callback given to start_worker), at most once
per MODEL_TTL_S, and the request gets a short Retry-After.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from backend.errors import (ApiError, BudgetExceeded, ModelBusy, ModelDisabled, ModelInUse, ModelUnavailable,
                            NotFound)
from backend.memory import readings
from backend.pipelines.base import Availability  # the contract's vocabulary; no pipeline is imported
from backend.registry.admission import Admission, ModelFigures, Outcome, admit, recycle_helps
from backend.registry.costs import CostBook, MeasuredCost
from backend.registry.events import EventLog
from backend.registry.lease import Lease
from backend.registry.peers import Peers
from backend.registry.spec import Estimate, ModelSpec, ModelState

if TYPE_CHECKING:  # typing only: the registry never imports a pipeline
    from backend.pipelines.base import Pipeline

logger = logging.getLogger(__name__)

EXTENSION = "registry"  # the key in app.extensions; read only through get_registry()
#: Retry-After while this worker is being replaced: a fresh gthread worker answers within a couple of
#: seconds (boot ~1 s; its listen socket is the master's, so nothing is refused meanwhile).
RECYCLE_RETRY_AFTER_S = 2


@dataclass
class _Flight:
    """One build in progress; followers wait on it and share its outcome."""

    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class _Entry:
    spec: ModelSpec
    state: ModelState = ModelState.NOT_LOADED
    pipeline: Pipeline | None = None
    flight: _Flight | None = None
    in_use: int = 0  # requests holding it (running or queued for a slot): never evicted while > 0
    draining: int = 0  # builds waiting for it to go idle so they can evict it: new requests wait meanwhile
    uses: int = 0  # requests served through a lease, over the process's life
    loads: int = 0
    last_used: float | None = None  # last request served, or the last load: TTL and LRU count from it
    loaded_at: float | None = None
    load_s: float | None = None
    # This process's last build and its requests (the snapshot shows them; the CostBook keeps the worst):
    imports_mb: float | None = None  # RSS the runtime import added before the last build (0: already imported)
    measured_mb: float | None = None  # RSS after load minus before (after the import)
    anon_mb: float | None = None  # anonymous memory after load minus before
    peak_load_mb: float | None = None  # peak RSS during load minus before
    first_use_mb: float | None = None  # RSS after the first request since the load minus before the load
    request_peak_mb: float | None = None  # largest rise of peak RSS during one request (activations)
    rss_before_load_mb: float = 0.0
    load_epoch: int = -1  # the registry's epoch when its last build ended undisturbed (-1: disturbed)
    key: str = ""  # what its measured costs are shared under (set at each admission)
    last_error: str | None = None

    def cost_key(self) -> str:
        return self.spec.cost_key() if self.spec.cost_key is not None else self.spec.name


@dataclass(frozen=True)
class _Need:
    """What admitting one model is expected to add, and where the figure comes from."""

    model_mb: float  # the model's own cost (measured, else the estimate's weights + allowance)
    imports_mb: float  # its runtime's import in this process
    fresh_imports_mb: float  # the same in a freshly started worker
    source: str  # "estimate from files", "measured here", "measured by another worker (pid N)"
    estimate: Estimate
    measured: MeasuredCost | None

    @property
    def mb(self) -> float:
        return self.model_mb + self.imports_mb

    @property
    def fresh_mb(self) -> float:
        return self.model_mb + self.fresh_imports_mb


EventListener = Callable[[str, str, dict[str, Any]], None]


def get_registry(app: Flask | None = None) -> ModelRegistry:
    """The registry of `app`, by default of the app handling the current request."""
    return (app or current_app).extensions[EXTENSION]


class ModelRegistry:
    """Owns model lifetime: lazy single-flight builds, use counts, TTL, LRU eviction, admission."""

    def __init__(self, budget_mb: float, *, margin_mb: float = 48, ttl_s: int = 300,
                 retry_after_s: int = 30, queue_timeout_s: float = 30, max_queue: int = 64, workers: int = 1,
                 memory: readings.ServiceMemory | None = None, costs: CostBook | None = None,
                 peers: Peers | None = None) -> None:
        self.budget_mb = float(budget_mb)
        self.margin_mb = float(margin_mb)
        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self.queue_timeout_s = queue_timeout_s
        self.max_queue = max_queue  # requests per model that may wait for a slot; more are refused at once
        self._waiting: dict[str, int] = {}  # requests waiting for each model's slot now
        self.workers = workers  # how many workers share the budget (each holds its own models)
        self._slots: dict[str, threading.Semaphore] = {}
        self.memory = memory or readings.ServiceMemory()
        self.costs = costs or CostBook(None)  # None: measurements stay in this process
        self.peers = peers or Peers(None)  # None: this process admits alone
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a model's use count drops or a drain ends
        self._build_lock = threading.Lock()  # one build at a time: admission is never raced
        self._listeners: list[EventListener] = []
        self.events = EventLog()  # recent events for the operator panel (GET /api/operator)
        self.subscribe(self.events.record)
        self._sweeper_pid: int | None = None
        self._stop = threading.Event()
        # Set by start_worker() in a Gunicorn worker: its boot figures and how to ask for a replacement.
        self.boot_rss_mb: float | None = None
        self.boot_pss_mb: float | None = None
        self._recycle: Callable[[], None] | None = None
        self._recycle_requested_at: float | None = None
        self._running = 0  # requests holding a model slot (running, not queued), over every model
        # Bumped when a request starts, a build starts, a model is unloaded or a decode is reserved:
        # a figure measured across a bump includes someone else's memory and is not kept.
        self._epoch = 0
        self._jobs_mb: dict[str, float] = {}  # reserved for jobs running in child processes (reserve_job)

    def init_app(self, app: Flask) -> None:
        """Make this the registry of `app` (get_registry() finds it)."""
        app.extensions[EXTENSION] = self

    # --- registration and introspection ------------------------------------------------------
    def register(self, spec: ModelSpec) -> None:
        entry = _Entry(spec=spec, state=ModelState.NOT_LOADED if spec.enabled else ModelState.DISABLED)
        self._entries[spec.name] = entry
        self._slots[spec.name] = threading.BoundedSemaphore(spec.max_concurrency)

    def subscribe(self, listener: EventListener) -> None:
        """Call listener(event, model, facts) on load, unload, evict and refuse."""
        self._listeners.append(listener)

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    @property
    def effective_budget_mb(self) -> float:
        """The budget, lowered to the cgroup's limit when the instance allows less."""
        limit = self.memory.limit_mb()
        return min(self.budget_mb, limit) if limit else self.budget_mb

    def _entry_or_404(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(f"no model named {name!r}; known: {', '.join(self._entries)}")
        return entry

    def state(self, name: str) -> ModelState:
        return self._entry_or_404(name).state

    def is_enabled(self, name: str) -> bool:
        entry = self._entries.get(name)
        return entry is not None and entry.spec.enabled

    def snapshot(self) -> list[dict[str, Any]]:
        """Every model with its state, whether it can be served, its cost and where that figure comes from."""
        rows = []
        for name, e in self._entries.items():
            availability = self._availability(e)
            need = self._need(e)
            with self._lock:
                row: dict[str, Any] = {
                    "name": name, "state": e.state.value, "description": e.spec.description,
                    "pinned": e.spec.pinned, "servable": availability.servable,
                    "source": availability.source or None, "reason": availability.reason or None,
                    "fix": availability.fix or None,
                    "cost_mb": round(need.mb, 1), "cost_source": need.source,
                    "cost": {"model_mb": round(need.model_mb, 1), "imports_mb": round(need.imports_mb, 1),
                             "source": need.source,
                             "estimate": {"weights_mb": round(need.estimate.weights_mb, 1),
                                          "allowance_mb": round(need.estimate.allowance_mb, 1),
                                          "imports_mb": round(need.estimate.imports_mb, 1),
                                          "total_mb": round(need.estimate.model_mb + need.estimate.imports_mb, 1)},
                             "measured": _measured_row(need.measured)},
                    "estimate_mb": round(need.estimate.model_mb + need.estimate.imports_mb, 1),
                    "measured_mb": _round(e.measured_mb), "anon_mb": _round(e.anon_mb),
                    "imports_mb": _round(e.imports_mb), "peak_load_mb": _round(e.peak_load_mb),
                    "first_use_mb": _round(e.first_use_mb), "request_peak_mb": _round(e.request_peak_mb),
                    "load_s": _round(e.load_s, 3),
                    "loaded_at": e.loaded_at, "last_used": e.last_used, "use_count": e.uses,
                    "in_use": e.in_use, "loads": e.loads, "last_error": e.last_error,
                }
                if e.pipeline is not None:
                    row.update(e.pipeline.describe())
            rows.append(row)
        return rows

    def budget_status(self) -> dict[str, Any]:
        used = self.memory.used_mb()
        budget = self.effective_budget_mb
        return {"budget_mb": round(budget, 1), "margin_mb": self.margin_mb, "used_mb": round(used, 1),
                "used_percent": round(100 * used / budget, 1), "source": self.memory.source,
                "process_rss_mb": round(readings.rss_mb(), 1)}

    def readiness(self) -> list[dict[str, Any]]:
        """Per model: can it be served now, and if not, why and the one command that makes it so.

        An enabled model is unservable when its files or runtime are missing, or when even a fresh
        worker could never admit it: its cost exceeds the budget less what the service holds with
        nothing loaded (the master and every worker at this worker's boot size; what other
        workers' models hold now is "not now", not "never").
        """
        limit = self._limit_mb()
        baseline = self._idle_baseline_mb()
        rows = []
        for name, e in self._entries.items():
            row: dict[str, Any] = {"name": name, "enabled": e.spec.enabled, "state": e.state.value}
            if not e.spec.enabled:
                rows.append({**row, "servable": False, "reason": "disabled by configuration",
                             "fix": f"add {name} to ENABLED_MODELS (and its ENABLE_* switch)"})
                continue
            if e.spec.runs_elsewhere:
                rows.append({**row, "servable": True, "source": e.spec.runs_elsewhere})
                continue
            availability = self._availability(e)
            if not availability.servable:
                rows.append({**row, "servable": False, "reason": availability.reason, "fix": availability.fix})
                continue
            need = self._need(e)
            if e.state is not ModelState.LOADED and baseline + need.fresh_mb > limit:
                rows.append({**row, "servable": False, "need_mb": round(need.fresh_mb),
                             "reason": f"needs about {need.fresh_mb:.0f} MB ({need.source}) but at most "
                                       f"{max(0.0, limit - baseline):.0f} MB of the {self.effective_budget_mb:.0f} MB "
                                       f"budget is ever free (the service holds {baseline:.0f} MB with nothing loaded)",
                             "fix": "BACKEND=onnx, a larger MEMORY_BUDGET_MB, or fewer WORKERS"})
                continue
            rows.append({**row, "servable": True, "source": availability.source, "need_mb": round(need.fresh_mb)})
        return rows

    def _idle_baseline_mb(self) -> float:
        """What the service holds with nothing loaded: the master and every worker at this worker's boot size."""
        if self.boot_pss_mb is not None:
            master = self.memory.root_pid
            return (readings.pss_mb(master) if master != os.getpid() else 0.0) + self.workers * self.boot_pss_mb
        return self.memory.used_mb()  # not a Gunicorn worker (tests, flask run): what the process holds now

    # --- jobs run in child processes (backend.jobs) ------------------------------------------------
    def job_ever_fits(self, need_mb: float) -> tuple[bool, float]:
        """Whether a job process of `need_mb` could ever run beside this service, and the most that is ever free."""
        free = max(0.0, self._limit_mb() - self._idle_baseline_mb())
        return need_mb <= free, free

    def admit_job(self, name: str, need_mb: float, *, wait: bool = False) -> bool:
        """Make room for a job process of `need_mb` (idle models evicted LRU first) and reserve it; False: not now.

        `wait`: while only models in use stand in the way, wait for them (up to QUEUE_TIMEOUT_S).
        A job's runner does not: it retries on its own and must not hold requests back meanwhile.
        """
        with self._admitted(name, lambda: need_mb, wait_s=self.queue_timeout_s if wait else 0) as admission:
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
        self._publish_reserved()

    @contextmanager
    def transient(self, what: str, need_mb: float) -> Iterator[None]:
        """Memory a request allocates outside any model (decoding an upload), admitted like a model's.

        Idle models are evicted LRU first if that makes room; if nothing does, 503
        memory_budget_exceeded with Retry-After, before a byte is allocated. The reservation is
        held (and counted by every admission, in every worker) until the block ends.
        """
        label = f"{what}-{threading.get_ident()}-{time.monotonic_ns()}"
        if not self.admit_job(label, need_mb, wait=True):
            budget = self.effective_budget_mb
            raise BudgetExceeded(
                f"{what} needs about {need_mb:.0f} MB and the {budget:.0f} MB budget has not that much free now "
                "(models in use cannot be evicted); retry later", headers={"Retry-After": str(self.retry_after_s)},
                needed_mb=round(need_mb, 1), budget_mb=round(budget), margin_mb=round(self.margin_mb))
        with self._lock:
            self._bump_epoch()  # the decode allocates beside whatever is being measured now
        try:
            yield
        finally:
            self.reserve_job(label, 0)

    # --- use -----------------------------------------------------------------------------------
    def lease(self, name: str) -> Lease:
        """Check a pipeline out for one request (building it if needed); the caller must release() it."""
        entry = self._entry_or_404(name)
        pipeline = self._hold(entry)
        slot = self._slots[name]
        # A bounded queue and a bounded wait (Ollama's OLLAMA_MAX_QUEUE): a slow inference or many
        # clients cannot hold every thread of the worker, so /health and other models still answer.
        if not slot.acquire(blocking=False):
            try:
                with self._lock:
                    self._join_queue(entry)
            except ModelBusy:
                self._checkin(entry, served=False)
                raise
            try:
                got = slot.acquire(timeout=self.queue_timeout_s)
            finally:
                with self._lock:
                    self._waiting[name] -= 1
            if not got:
                self._checkin(entry, served=False)
                raise self._busy(entry, f"none finished within {self.queue_timeout_s:g} s (QUEUE_TIMEOUT_S)")
        with self._lock:
            entry.uses += 1
            entry.last_used = time.time()
        epoch, start_rss_mb = self._start_request_measurement()
        return Lease(name, pipeline, partial(self._release, entry, slot, epoch, start_rss_mb))

    def _join_queue(self, entry: _Entry) -> None:
        """Count one more request waiting for `entry` (call with self._lock held); 503 model_busy if MAX_QUEUE wait."""
        name = entry.spec.name
        if self._waiting.get(name, 0) >= self.max_queue:
            raise self._busy(entry, f"{self.max_queue} request(s) already wait for it (MAX_QUEUE)")
        self._waiting[name] = self._waiting.get(name, 0) + 1

    def _busy(self, entry: _Entry, why: str) -> ModelBusy:
        return ModelBusy(f"model {entry.spec.name!r} is busy (it serves {entry.spec.max_concurrency} request(s) at "
                         f"a time to bound its memory) and {why}; retry later",
                         headers={"Retry-After": str(self.retry_after_s)}, model=entry.spec.name)

    @contextmanager
    def acquire(self, name: str) -> Iterator[Pipeline]:
        """`with registry.acquire("tts") as pipe:` a model that cannot be evicted while in use."""
        lease = self.lease(name)
        try:
            yield lease.pipeline
        finally:
            lease.release()

    def load(self, name: str) -> None:
        """Build a model now (admin endpoint, pinned models): not a use, and takes no request slot."""
        entry = self._entry_or_404(name)
        self._ensure_loaded(entry, hold=False)
        with self._lock:
            entry.last_used = time.time()  # idle from now on: TTL and LRU count from the load
        if self.ttl_s == 0 and not entry.spec.pinned:
            self._unload(entry, reason="ttl")

    def _hold(self, entry: _Entry) -> Pipeline:
        """The loaded pipeline, counted in use so it cannot be evicted; built first if needed."""
        return self._ensure_loaded(entry, hold=True)

    def _ensure_loaded(self, entry: _Entry, *, hold: bool) -> Pipeline:
        name = entry.spec.name
        if not entry.spec.enabled:
            raise ModelDisabled(f"model {name!r} is disabled by configuration", model=name)
        self._ensure_sweeper()
        if entry.state is not ModelState.LOADED:
            self.require_available(name)  # nothing is evicted or built for a model that cannot be served
        while True:
            with self._lock:
                while hold and entry.draining and entry.state is ModelState.LOADED:
                    # A build waits to evict it: let it, then build it again in turn. This wait is
                    # the model's queue (MAX_QUEUE), so waiting requests cannot hold every thread.
                    self._join_queue(entry)
                    try:
                        self._idle.wait()
                    finally:
                        self._waiting[name] -= 1
                if entry.state is ModelState.LOADED:
                    assert entry.pipeline is not None
                    if hold:
                        entry.in_use += 1
                    return entry.pipeline
                flight, leader = entry.flight, entry.flight is None
                if leader:
                    flight = entry.flight = _Flight()
                    entry.state = ModelState.LOADING
            assert flight is not None
            if not leader:
                flight.done.wait()
                if flight.error is not None:
                    raise flight.error
                continue  # loaded by the leader: take it like any other user
            try:
                pipeline = self._build(entry, hold=hold)
            except BaseException as exc:
                with self._lock:
                    entry.state, entry.flight = ModelState.NOT_LOADED, None
                    entry.last_error = str(exc)
                flight.error = exc
                flight.done.set()
                raise
            flight.done.set()
            return pipeline

    def _bump_epoch(self) -> int:
        """Something starts that changes this process's memory; the new epoch. Call with self._lock held."""
        self._epoch += 1
        return self._epoch

    def _start_request_measurement(self) -> tuple[int, float | None]:
        """Count the request as running; (its epoch, RSS now if it runs alone and the peak-RSS mark was reset).

        Requests queued for a model's slot hold no activations, so only running ones count: under
        steady load the first request of a queue is still measured.
        """
        with self._lock:
            self._running += 1
            alone = self._running == 1
            epoch = self._bump_epoch()
        if not alone or self._build_lock.locked():  # a build is measuring its own peak
            return epoch, None
        if not readings.reset_peak_rss():
            return epoch, None  # the mark would be the process's all-time high, not this request's
        return epoch, readings.rss_mb()

    def _release(self, entry: _Entry, slot: threading.Semaphore, epoch: int, start_rss_mb: float | None) -> None:
        # Measured while the slot is still held: no other request of this model has started yet.
        with self._lock:
            undisturbed = self._epoch == epoch  # nothing else started, was built or unloaded since
        request_peak = None
        if start_rss_mb is not None and undisturbed:
            peak = readings.peak_rss_mb()
            if peak is not None:
                request_peak = max(0.0, peak - start_rss_mb)
        first_use_mb = None
        if undisturbed and entry.load_epoch == epoch - 1:
            # The first request after each build (not only the process's first), with nothing else
            # in between: a model rebuilt after an eviction is measured again, against the RSS
            # before that build. Inference grows memory past what loading did (arenas, caches).
            first_use_mb = entry.first_use_mb = max(0.0, readings.rss_mb() - entry.rss_before_load_mb)
        with self._lock:
            self._running -= 1
            if request_peak is not None:
                entry.request_peak_mb = max(entry.request_peak_mb or 0.0, request_peak)
        if request_peak is not None or first_use_mb is not None:
            self.costs.record(entry.key or entry.cost_key(), request_peak_mb=request_peak, first_use_mb=first_use_mb)
            self._publish_reserved()
        slot.release()
        self._checkin(entry, served=True)

    def _checkin(self, entry: _Entry, *, served: bool) -> None:
        with self._lock:
            entry.in_use -= 1
            if served:
                entry.last_used = time.time()
            idle = entry.in_use == 0
            self._idle.notify_all()
        if idle and self.ttl_s == 0 and not entry.spec.pinned:
            self._unload(entry, reason="ttl")

    # --- availability, cost, build, admission ------------------------------------------------------
    def _availability(self, entry: _Entry) -> Availability:
        if entry.spec.availability is None:
            return Availability(servable=True)
        try:
            return entry.spec.availability()
        except Exception as exc:  # a broken check must not take the service down: say so instead
            logger.exception("availability check of %s failed", entry.spec.name)
            return Availability.missing(f"availability check failed: {exc}", "see the server log")

    def require_available(self, name: str) -> None:
        """503 model_unavailable naming the fix when a model's files or runtime are missing; else nothing."""
        entry = self._entry_or_404(name)
        if not entry.spec.enabled:
            raise ModelDisabled(f"model {name!r} is disabled by configuration", model=name)
        availability = self._availability(entry)
        if not availability.servable:
            self._emit("unavailable", name)
            raise ModelUnavailable(f"model {name!r} cannot be served: {availability.reason}; to fix: {availability.fix}",
                                   model=name, fix=availability.fix)

    def _need(self, entry: _Entry) -> _Need:
        """What admitting `entry` adds now: measured figures (any worker's) if there are any, else the estimate."""
        estimate = entry.spec.estimate()
        entry.key = entry.cost_key()
        measured = self.costs.get(entry.key)
        model_mb = measured.cost_mb() if measured is not None else None
        if model_mb is not None and measured is not None and measured.request_peak_mb is None:
            # Loaded but no request measured yet (e.g. its worker was killed in the first one):
            # the load figures miss the activations, so the estimate still bounds it from below.
            model_mb = max(model_mb, estimate.model_mb)
        if model_mb is None:
            source, model_mb = "estimate from files", estimate.model_mb
        elif self.costs.measured_here(entry.key):
            source = "measured here"
        else:
            source = f"measured by another worker (pid {measured.pid})"  # type: ignore[union-attr]
        return _Need(model_mb, estimate.imports_mb, estimate.fresh_imports_mb, source, estimate, measured)

    def _headroom_mb(self, entry: _Entry) -> float:
        """Memory a loaded model may still need above its steady size while it serves a request."""
        measured = self.costs.get(entry.key) if entry.key else None
        if measured is not None and measured.request_peak_mb is not None:
            return measured.request_peak_mb
        if entry.request_peak_mb is not None:
            return entry.request_peak_mb
        estimate = entry.spec.estimate()  # not measured yet: assume the estimate
        return max(0.0, estimate.model_mb - (entry.measured_mb or 0.0))

    def _figures(self, entry: _Entry) -> ModelFigures:
        return ModelFigures(name=entry.spec.name, loaded=entry.state is ModelState.LOADED, in_use=entry.in_use,
                            pinned=entry.spec.pinned, last_used=entry.last_used,
                            resident_mb=entry.measured_mb or 0.0, headroom_mb=self._headroom_mb(entry))

    def _build(self, entry: _Entry, *, hold: bool) -> Pipeline:
        """Admit, build and measure `entry`; it is LOADED (and held once if `hold`) before the admission locks go."""
        name = entry.spec.name
        with self._admitted(name, lambda: self._need(entry).mb, wait_s=self.queue_timeout_s) as admission:
            need = self._need(entry)  # the figure just admitted (the locks are held)
            if not admission.fits:
                self._refuse(entry, need, admission)
            # The runtime is imported first and measured on its own, so the build's figures are the model's.
            with self._lock:
                build_epoch, quiet = self._bump_epoch(), self._running == 0
            before_import = readings.rss_mb()
            if entry.spec.import_runtime is not None:
                try:
                    entry.spec.import_runtime()
                except ImportError as exc:
                    raise ModelUnavailable(f"model {name!r} cannot be served: its runtime does not import ({exc})",
                                           model=name) from exc
            before_rss, before_anon = readings.rss_mb(), readings.anon_mb()
            peak_reset = readings.reset_peak_rss()
            started = time.perf_counter()
            pipeline = entry.spec.factory()
            try:
                pipeline.load()
            except ApiError:
                pipeline.close()
                readings.release_memory()
                raise
            except Exception as exc:
                pipeline.close()
                readings.release_memory()
                logger.exception("model %s failed to build", name)
                raise ModelUnavailable(f"model {name!r} failed to load: {exc}", model=name) from exc
            load_s = time.perf_counter() - started
            peak = readings.peak_rss_mb() if peak_reset else None
            readings.release_memory()  # drop load-time transients before measuring steady cost
            after_rss, after_anon = readings.rss_mb(), readings.anon_mb()
            entry.imports_mb = max(0.0, before_rss - before_import)
            entry.rss_before_load_mb = before_rss
            entry.measured_mb = max(0.0, after_rss - before_rss)
            entry.anon_mb = max(0.0, after_anon - before_anon)
            entry.peak_load_mb = max(0.0, (peak or after_rss) - before_rss)
            entry.first_use_mb = None
            with self._lock:  # a request ran or anything else started meanwhile: the figures are not its own
                undisturbed = quiet and self._epoch == build_epoch
            entry.load_epoch = build_epoch if undisturbed else -1
            entry.load_s = load_s
            entry.loaded_at = time.time()
            entry.loads += 1
            if undisturbed:
                self.costs.record(entry.key, measured_mb=entry.measured_mb, peak_load_mb=entry.peak_load_mb)
            # Loaded (and in use) before the locks go: the next admission, here or in another worker,
            # must see it as a model it can wait for or evict, not as memory nobody owns.
            with self._lock:
                entry.pipeline, entry.state, entry.flight = pipeline, ModelState.LOADED, None
                if hold:
                    entry.in_use += 1
                entry.last_used = time.time()
                entry.last_error = None
            self._publish_reserved()
        logger.info("event=model_loaded model=%s load_s=%.2f imports_mb=%.1f rss_before_mb=%.1f rss_after_mb=%.1f "
                    "measured_mb=%.1f anon_mb=%.1f peak_load_mb=%.1f expected_mb=%.1f expected_from=%r",
                    name, load_s, entry.imports_mb, before_rss, after_rss, entry.measured_mb, entry.anon_mb,
                    entry.peak_load_mb, need.mb, need.source)
        self._emit("load", name, mb=entry.measured_mb, seconds=load_s)
        return pipeline

    def _publish_reserved(self) -> None:
        """Tell the other workers the head-room this one's loaded models keep."""
        with self._lock:
            loaded = [e for e in self._entries.values() if e.state is ModelState.LOADED]
            jobs = {f"job:{name}": round(mb, 1) for name, mb in self._jobs_mb.items()}
        self.peers.publish({**{e.spec.name: round(self._headroom_mb(e), 1) for e in loaded}, **jobs})

    def _admission(self, name: str, need_mb: float, limit_mb: float) -> Admission:
        with self._lock:
            entries = list(self._entries.values())
            jobs_mb = sum(self._jobs_mb.values())
        used_mb = self.memory.used_mb() + jobs_mb
        figures = [self._figures(e) for e in entries]
        return admit(figures, name=name, need_mb=need_mb, used_mb=used_mb, limit_mb=limit_mb,
                     reserved_mb=self.peers.reserved_mb())

    @contextmanager
    def _admitted(self, name: str, need_mb: Callable[[], float], *, wait_s: float) -> Iterator[Admission]:
        """Make room for `name` and yield the verdict with the admission locks held (the caller builds or refuses).

        One admission and build at a time in this process, and in the whole service: two workers
        admitting together would both read the same free memory. While only models in use stand in
        the way (Outcome.WAIT), wait up to `wait_s` for them to finish, outside the locks: new
        requests for them wait too (they are draining) until the caller's block ends, so a steady
        stream of them cannot starve this build; they then build them again in turn.
        """
        deadline = time.monotonic() + wait_s
        drained: list[_Entry] = []
        try:
            while True:
                with self._build_lock, self.peers.admission():
                    admission = self._make_room(name, need_mb())
                    remaining = deadline - time.monotonic()
                    if admission.outcome is not Outcome.WAIT or remaining <= 0:
                        yield admission
                        return
                self._wait_idle([self._entries[v] for v in admission.victims], drained, remaining)
        finally:
            if drained:
                with self._lock:
                    for entry in drained:
                        entry.draining -= 1
                    self._idle.notify_all()

    def _wait_idle(self, entries: list[_Entry], drained: list[_Entry], timeout_s: float) -> None:
        """Hold new requests for `entries` back (once each, noted in `drained`) and wait until none is in use."""
        with self._lock:
            for entry in entries:
                if entry not in drained:
                    entry.draining += 1
                    drained.append(entry)
            self._idle.wait_for(lambda: all(e.in_use == 0 for e in entries), timeout=timeout_s)

    def _make_room(self, name: str, need_mb: float) -> Admission:
        """Evict what admission names (LRU first, asking again after each) and return the last verdict."""
        limit = self._limit_mb()
        admission = self._admission(name, need_mb, limit)
        if admission.outcome is Outcome.EVICT:
            for victim in admission.victims:
                self._unload(self._entries[victim], reason="evicted")
                admission = self._admission(name, need_mb, limit)
                if admission.fits:
                    break
        return admission

    def _limit_mb(self) -> float:
        return self.effective_budget_mb - self.margin_mb

    def _refuse(self, entry: _Entry, need: _Need, admission: Admission) -> None:
        name, used = entry.spec.name, admission.used_mb
        budget = self.effective_budget_mb
        recycling = self._recycle_if_it_helps(entry, need, admission, self._limit_mb())
        self._emit("refuse", name, mb=need.mb)
        logger.warning("event=model_refused model=%s needed_mb=%.0f needed_from=%r used_mb=%.0f budget_mb=%.0f "
                       "margin_mb=%.0f recycling=%s", name, need.mb, need.source, used, budget, self.margin_mb,
                       recycling)
        if recycling:
            raise BudgetExceeded(
                f"model {name!r} needs about {need.mb:.0f} MB but this worker holds memory it cannot give back "
                f"({admission.free_mb:.0f} MB of the {budget:.0f} MB budget free with nothing loaded); it is being "
                f"replaced by a fresh worker: retry in {RECYCLE_RETRY_AFTER_S} s",
                headers={"Retry-After": str(RECYCLE_RETRY_AFTER_S)}, model=name, needed_mb=round(need.mb),
                used_mb=round(used), budget_mb=round(budget), margin_mb=round(self.margin_mb), recycling=True)
        why = (f"{', '.join(admission.victims)} did not finish within {self.queue_timeout_s:g} s (QUEUE_TIMEOUT_S)"
               if admission.outcome is Outcome.WAIT else "models in use cannot be evicted")
        raise BudgetExceeded(
            f"model {name!r} needs about {need.mb:.0f} MB but only {admission.free_mb:.0f} MB of the "
            f"{budget:.0f} MB budget is free ({why}); retry later",
            headers={"Retry-After": str(self.retry_after_s)},
            model=name, needed_mb=round(need.mb), used_mb=round(used), budget_mb=round(budget),
            margin_mb=round(self.margin_mb))

    def _recycle_if_it_helps(self, entry: _Entry, need: _Need, admission: Admission, limit_mb: float) -> bool:
        """Ask for a fresh worker when nothing else is loaded or in use and one would admit the model.

        True while this worker is being replaced (asked now or earlier), so the caller says so.
        """
        if self._recycle is None or self.boot_rss_mb is None:
            return False  # not a Gunicorn worker (tests, flask run): nobody to replace it
        now = time.time()
        with self._lock:
            if self._recycle_requested_at is not None:
                window = self.ttl_s if self.ttl_s > 0 else float("inf")  # TTL <= 0: once per worker
                if now - self._recycle_requested_at < window:
                    return True  # already asked: the replacement is on its way
            others_busy = any(e.state in (ModelState.LOADED, ModelState.LOADING) or e.in_use
                              for e in self._entries.values() if e is not entry)
        if others_busy:
            return False
        retained = max(0.0, readings.rss_mb() - self.boot_rss_mb)
        if not recycle_helps(used_mb=admission.used_mb, retained_mb=retained, need_fresh_mb=need.fresh_mb,
                             limit_mb=limit_mb):
            return False
        with self._lock:
            self._recycle_requested_at = now
        logger.warning("event=worker_recycle pid=%d reason=memory_retained model=%s retained_mb=%.0f need_mb=%.0f "
                       "used_mb=%.0f limit_mb=%.0f: asking Gunicorn for a fresh worker after in-flight requests",
                       os.getpid(), entry.spec.name, retained, need.fresh_mb, admission.used_mb, limit_mb)
        self._emit("recycle", entry.spec.name, retained_mb=retained)
        self._recycle()
        return True

    def unload(self, name: str) -> bool:
        """Unload now (admin); False if it was not loaded. A model in use is refused with 409."""
        entry = self._entry_or_404(name)
        with self._lock:
            if entry.state is not ModelState.LOADED:
                return False
            if entry.in_use:
                raise ModelInUse(f"model {name!r} is serving {entry.in_use} request(s); retry when idle",
                                model=name, in_use=entry.in_use)
        return self._unload(entry, reason="admin")

    def _unload(self, entry: _Entry, *, reason: str) -> bool:
        with self._lock:
            if entry.state is not ModelState.LOADED or entry.in_use:
                return False  # someone took it meanwhile: it stays
            pipeline, entry.pipeline = entry.pipeline, None
            entry.state = ModelState.NOT_LOADED
            self._bump_epoch()
        before = readings.rss_mb()
        if pipeline is not None:
            pipeline.close()
        del pipeline
        readings.release_memory()
        after = readings.rss_mb()
        logger.info("event=model_unloaded model=%s reason=%s rss_before_mb=%.1f rss_after_mb=%.1f freed_mb=%.1f",
                    entry.spec.name, reason, before, after, before - after)
        self._emit("evict" if reason == "evicted" else "unload", entry.spec.name, mb=before - after, reason=reason)
        self._publish_reserved()
        return True

    # --- worker life -----------------------------------------------------------------------------
    def start_worker(self, root_pid: int | None = None, recycle: Callable[[], None] | None = None) -> threading.Thread:
        """In a freshly started worker: count the whole service's memory, note the boot figures, say
        what can be served, and build pinned models. `recycle` asks the server for a fresh worker."""
        if root_pid:
            self.memory.root_pid = root_pid
        self._recycle = recycle
        self.boot_rss_mb = readings.rss_mb()
        self.boot_pss_mb = readings.pss_mb(os.getpid())
        self._ensure_sweeper()
        self.log_readiness()
        thread = threading.Thread(target=self.load_pinned, name="load-pinned", daemon=True)
        thread.start()
        return thread

    def log_readiness(self) -> None:
        """One line per model: servable now, or why not and the one command that makes it so."""
        for row in self.readiness():
            if row["servable"]:
                logger.info("model %s: servable (%s, about %s MB)", row["name"], row.get("source") or "loaded",
                            row.get("need_mb"))
            elif row["enabled"]:
                logger.warning("model %s: NOT servable: %s; to fix: %s", row["name"], row["reason"], row["fix"])
            else:
                logger.info("model %s: disabled by configuration", row["name"])

    def load_pinned(self) -> None:
        for entry in self._entries.values():
            if entry.spec.pinned and entry.spec.enabled:
                try:
                    self.load(entry.spec.name)
                except ApiError as exc:
                    logger.error("pinned model %s could not be loaded: %s", entry.spec.name, exc.message)

    def pinned_ready(self) -> bool:
        return all(e.state is ModelState.LOADED for e in self._entries.values() if e.spec.pinned and e.spec.enabled)

    def sweep_idle(self, now: float | None = None) -> list[str]:
        """Unload models idle for longer than the TTL; returns their names."""
        if self.ttl_s < 0:
            return []
        now = now or time.time()
        with self._lock:
            expired = [e for e in self._entries.values()
                       if e.state is ModelState.LOADED and e.in_use == 0 and not e.spec.pinned
                       and e.last_used is not None and now - e.last_used >= self.ttl_s]
        return [e.spec.name for e in expired if self._unload(e, reason="ttl")]

    def _ensure_sweeper(self) -> None:
        # Threads do not survive fork: each process (worker) starts its own, once.
        if self.ttl_s <= 0 or self._sweeper_pid == os.getpid():
            return
        with self._lock:
            if self._sweeper_pid == os.getpid():
                return
            self._sweeper_pid = os.getpid()
        period = max(0.1, min(self.ttl_s / 4, 10.0))
        threading.Thread(target=self._sweep_forever, args=(period,), name="model-ttl", daemon=True).start()

    def _sweep_forever(self, period: float) -> None:
        while not self._stop.wait(period):
            try:
                self.sweep_idle()
            except Exception:  # the sweeper must outlive any one failed unload
                logger.exception("TTL sweep failed")

    def shutdown(self) -> None:
        """Stop the sweeper and unload every idle model (tests; a worker's memory goes back when it exits)."""
        self._stop.set()
        for entry in list(self._entries.values()):
            self._unload(entry, reason="shutdown")
        self.peers.publish({})

    def _emit(self, event: str, name: str, **facts: Any) -> None:
        for listener in self._listeners:
            try:
                listener(event, name, facts)
            except Exception:
                logger.exception("registry listener failed on %s", event)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _measured_row(measured: MeasuredCost | None) -> dict[str, Any] | None:
    if measured is None:
        return None
    return {"measured_mb": _round(measured.measured_mb), "peak_load_mb": _round(measured.peak_load_mb),
            "first_use_mb": _round(measured.first_use_mb), "request_peak_mb": _round(measured.request_peak_mb),
            "pid": measured.pid, "at": measured.at}
