"""ModelRegistry: owns model lifetime and decides what is loaded, against a measured memory budget.

Pipelines register a ModelSpec (a factory plus an estimate of what it costs); nothing is
built until first use. `lease(name)` / `acquire(name)` builds the model once however many
requests arrive together (single-flight) and counts users so a model in use is never evicted.
Before any build the model is admitted against the budget (backend.registry.admission): idle
models are evicted least-recently-used first, and if the model still cannot fit the request is
refused with BudgetExceeded (HTTP 503 + Retry-After) instead of letting the kernel OOM-kill the
worker. Each build's real cost is measured (RSS, anonymous memory, peak) and each request's
rise of peak RSS, when it runs alone; those figures replace the estimate for the next admission.
Only a request served through a lease counts as a use: an admin or pinned load builds the model
and measures its load, nothing else.
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

from backend.errors import (ApiError, BudgetExceeded, ModelBusy, ModelDisabled, ModelSaturated, ModelUnavailable,
                            NotFound)
from backend.memory import readings
from backend.registry.admission import Admission, ModelFigures, Outcome, admit
from backend.registry.lease import Lease
from backend.registry.spec import ModelSpec, ModelState

if TYPE_CHECKING:  # typing only: the registry never imports a pipeline
    from backend.pipelines.base import Pipeline

logger = logging.getLogger(__name__)

EXTENSION = "registry"  # the key in app.extensions; read only through get_registry()


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
    uses: int = 0  # requests served through a lease
    loads: int = 0
    last_used: float | None = None  # last request served, or the last load: TTL and LRU count from it
    loaded_at: float | None = None
    load_s: float | None = None
    measured_mb: float | None = None  # RSS after load minus before
    anon_mb: float | None = None  # anonymous memory after load minus before
    peak_load_mb: float | None = None  # peak RSS during load minus before
    first_use_mb: float | None = None  # RSS after the first request minus before load
    request_peak_mb: float | None = None  # largest rise of peak RSS during one request (activations)
    rss_before_load_mb: float = 0.0
    last_error: str | None = None

    def cost_mb(self) -> float:
        """What admitting this model is expected to add: measured if ever built, else the estimate."""
        measured = [m for m in (self.peak_load_mb, self.first_use_mb, self.measured_mb) if m is not None]
        if self.measured_mb is not None and self.request_peak_mb is not None:
            measured.append(self.measured_mb + self.request_peak_mb)
        return max(measured) if measured else self.spec.estimate_mb

    def headroom_mb(self) -> float:
        """Memory a loaded model may still need above its steady size while it serves a request."""
        if self.request_peak_mb is not None:
            return self.request_peak_mb
        return max(0.0, self.spec.estimate_mb - (self.measured_mb or 0.0))  # not measured yet: assume the estimate

    def figures(self) -> ModelFigures:
        return ModelFigures(name=self.spec.name, loaded=self.state is ModelState.LOADED, in_use=self.in_use,
                            pinned=self.spec.pinned, last_used=self.last_used, resident_mb=self.measured_mb or 0.0,
                            headroom_mb=self.headroom_mb())


EventListener = Callable[[str, str, dict[str, Any]], None]


def get_registry(app: Flask | None = None) -> ModelRegistry:
    """The registry of `app`, by default of the app handling the current request."""
    return (app or current_app).extensions[EXTENSION]


class ModelRegistry:
    """Owns model lifetime: lazy single-flight builds, use counts, TTL, LRU eviction, admission."""

    def __init__(self, budget_mb: float, *, margin_mb: float = 48, ttl_s: int = 300,
                 retry_after_s: int = 30, queue_timeout_s: float = 30,
                 memory: readings.ServiceMemory | None = None) -> None:
        self.budget_mb = float(budget_mb)
        self.margin_mb = float(margin_mb)
        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self.queue_timeout_s = queue_timeout_s
        self._slots: dict[str, threading.Semaphore] = {}
        self.memory = memory or readings.ServiceMemory()
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()  # one build at a time: admission is never raced
        self._listeners: list[EventListener] = []
        self._sweeper_pid: int | None = None
        self._stop = threading.Event()

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
        """Every model with its state and measured figures, for GET /api/models."""
        with self._lock:
            rows = []
            for name, e in self._entries.items():
                row: dict[str, Any] = {
                    "name": name, "state": e.state.value, "description": e.spec.description,
                    "pinned": e.spec.pinned, "estimate_mb": round(e.spec.estimate_mb, 1),
                    "measured_mb": _round(e.measured_mb), "anon_mb": _round(e.anon_mb),
                    "peak_load_mb": _round(e.peak_load_mb), "first_use_mb": _round(e.first_use_mb),
                    "request_peak_mb": _round(e.request_peak_mb),
                    "cost_mb": round(e.cost_mb(), 1), "load_s": _round(e.load_s, 3),
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

    # --- use -----------------------------------------------------------------------------------
    def lease(self, name: str) -> Lease:
        """Check a pipeline out for one request (building it if needed); the caller must release() it."""
        entry = self._entry_or_404(name)
        pipeline = self._hold(entry)
        slot = self._slots[name]
        if not slot.acquire(timeout=self.queue_timeout_s):
            self._checkin(entry, served=False)
            raise ModelSaturated(
                f"model {name!r} is busy with other requests (it serves {entry.spec.max_concurrency} "
                f"at a time to bound its memory) and none finished within {self.queue_timeout_s:g} s; retry later",
                headers={"Retry-After": str(self.retry_after_s)}, model=name)
        with self._lock:
            entry.uses += 1
            entry.last_used = time.time()
        start_rss_mb = self._start_request_measurement()
        return Lease(name, pipeline, partial(self._release, entry, slot, start_rss_mb))

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
        while True:
            with self._lock:
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
                pipeline = self._build(entry)
            except BaseException as exc:
                with self._lock:
                    entry.state, entry.flight = ModelState.NOT_LOADED, None
                    entry.last_error = str(exc)
                flight.error = exc
                flight.done.set()
                raise
            with self._lock:
                entry.pipeline, entry.state, entry.flight = pipeline, ModelState.LOADED, None
                if hold:
                    entry.in_use += 1
                entry.last_used = time.time()
                entry.last_error = None
            flight.done.set()
            return pipeline

    def _start_request_measurement(self) -> float | None:
        """Reset the peak-RSS mark if this request is alone in the process, and return RSS now."""
        with self._lock:
            alone = sum(e.in_use for e in self._entries.values()) == 1
        if not alone or self._build_lock.locked():  # a build is measuring its own peak
            return None
        if not readings.reset_peak_rss():
            return None  # the mark would be the process's all-time high, not this request's
        return readings.rss_mb()

    def _release(self, entry: _Entry, slot: threading.Semaphore, start_rss_mb: float | None) -> None:
        slot.release()
        self._checkin(entry, start_rss_mb=start_rss_mb, served=True)

    def _checkin(self, entry: _Entry, *, start_rss_mb: float | None = None, served: bool) -> None:
        if start_rss_mb is not None:
            peak = readings.peak_rss_mb()
            if peak is not None:
                rise = max(0.0, peak - start_rss_mb)
                with self._lock:
                    entry.request_peak_mb = max(entry.request_peak_mb or 0.0, rise)
        with self._lock:
            entry.in_use -= 1
            if served:
                entry.last_used = time.time()
            idle = entry.in_use == 0
            first_use = served and idle and entry.uses == 1 and entry.first_use_mb is None
        if first_use:
            # Inference grows memory past what loading did (arenas, caches): count it once.
            entry.first_use_mb = max(0.0, readings.rss_mb() - entry.rss_before_load_mb)
        if idle and self.ttl_s == 0 and not entry.spec.pinned:
            self._unload(entry, reason="ttl")

    # --- build, admission, unload ---------------------------------------------------------------
    def _build(self, entry: _Entry) -> Pipeline:
        name = entry.spec.name
        with self._build_lock:
            need = entry.cost_mb()
            self._make_room(entry, need)
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
            entry.rss_before_load_mb = before_rss
            entry.measured_mb = max(0.0, after_rss - before_rss)
            entry.anon_mb = max(0.0, after_anon - before_anon)
            entry.peak_load_mb = max(0.0, (peak or after_rss) - before_rss)
            entry.first_use_mb = None
            entry.load_s = load_s
            entry.loaded_at = time.time()
            entry.loads += 1
        logger.info("event=model_loaded model=%s load_s=%.2f rss_before_mb=%.1f rss_after_mb=%.1f "
                    "measured_mb=%.1f anon_mb=%.1f peak_load_mb=%.1f",
                    name, load_s, before_rss, after_rss, entry.measured_mb, entry.anon_mb, entry.peak_load_mb)
        self._emit("load", name, mb=entry.measured_mb, seconds=load_s)
        return pipeline

    def _admission(self, entry: _Entry, need_mb: float, limit_mb: float) -> Admission:
        used_mb = self.memory.used_mb()
        with self._lock:
            figures = [e.figures() for e in self._entries.values()]
        return admit(figures, name=entry.spec.name, need_mb=need_mb, used_mb=used_mb, limit_mb=limit_mb)

    def _make_room(self, entry: _Entry, need_mb: float) -> None:
        """Evict what admission names (LRU first, asking again after each) until `need_mb` fits, or refuse."""
        limit = self.effective_budget_mb - self.margin_mb
        admission = self._admission(entry, need_mb, limit)
        if admission.fits:
            return
        if admission.outcome is Outcome.EVICT:
            for victim in admission.victims:
                self._unload(self._entries[victim], reason="evicted")
                admission = self._admission(entry, need_mb, limit)
                if admission.fits:
                    return
        self._refuse(entry, need_mb, admission)

    def _refuse(self, entry: _Entry, need_mb: float, admission: Admission) -> None:
        name, used = entry.spec.name, admission.used_mb
        self._emit("refuse", name, mb=need_mb)
        budget = self.effective_budget_mb
        logger.warning("event=model_refused model=%s needed_mb=%.0f used_mb=%.0f budget_mb=%.0f margin_mb=%.0f",
                       name, need_mb, used, budget, self.margin_mb)
        raise BudgetExceeded(
            f"model {name!r} needs about {need_mb:.0f} MB but only {admission.free_mb:.0f} MB of the "
            f"{budget:.0f} MB budget is free (models in use cannot be evicted); retry later",
            headers={"Retry-After": str(self.retry_after_s)},
            model=name, needed_mb=round(need_mb), used_mb=round(used), budget_mb=round(budget),
            margin_mb=round(self.margin_mb))

    def unload(self, name: str) -> bool:
        """Unload now (admin); False if it was not loaded. A model in use is refused with 409."""
        entry = self._entry_or_404(name)
        with self._lock:
            if entry.state is not ModelState.LOADED:
                return False
            if entry.in_use:
                raise ModelBusy(f"model {name!r} is serving {entry.in_use} request(s); retry when idle",
                                model=name, in_use=entry.in_use)
        return self._unload(entry, reason="admin")

    def _unload(self, entry: _Entry, *, reason: str) -> bool:
        with self._lock:
            if entry.state is not ModelState.LOADED or entry.in_use:
                return False  # someone took it meanwhile: it stays
            pipeline, entry.pipeline = entry.pipeline, None
            entry.state = ModelState.NOT_LOADED
        before = readings.rss_mb()
        if pipeline is not None:
            pipeline.close()
        del pipeline
        readings.release_memory()
        after = readings.rss_mb()
        logger.info("event=model_unloaded model=%s reason=%s rss_before_mb=%.1f rss_after_mb=%.1f freed_mb=%.1f",
                    entry.spec.name, reason, before, after, before - after)
        self._emit("evict" if reason == "evicted" else "unload", entry.spec.name, mb=before - after, reason=reason)
        return True

    # --- worker life -----------------------------------------------------------------------------
    def start_worker(self, root_pid: int | None = None) -> threading.Thread:
        """In a freshly started worker: count the whole service's memory and build pinned models."""
        if root_pid:
            self.memory.root_pid = root_pid
        self._ensure_sweeper()
        thread = threading.Thread(target=self.load_pinned, name="load-pinned", daemon=True)
        thread.start()
        return thread

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

    def _emit(self, event: str, name: str, **facts: Any) -> None:
        for listener in self._listeners:
            try:
                listener(event, name, facts)
            except Exception:
                logger.exception("registry listener failed on %s", event)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
