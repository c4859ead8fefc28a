"""The model registry: decides what is loaded, against a measured memory budget.

Pipelines register a ModelSpec (a factory plus an estimate of what it costs); nothing is
built until first use. `acquire(name)` builds the model once however many requests arrive
together (single-flight), counts users so a model in use is never evicted, and before any
build admits it against the budget: idle models are evicted least-recently-used first, and
if the model still cannot fit the request is refused with BudgetExceeded (HTTP 503 +
Retry-After) instead of letting the kernel OOM-kill the worker. Each build's real cost is
measured (RSS, anonymous memory, peak) and replaces the estimate for the next admission.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import (ApiError, BudgetExceeded, ModelBusy, ModelDisabled, ModelSaturated, ModelUnavailable,
                            NotFound)
from backend.memory import readings

if TYPE_CHECKING:  # typing only: backend.pipelines imports the registry's ModelSpec
    from backend.pipelines.base import Pipeline

logger = logging.getLogger(__name__)


class ModelState(str, Enum):
    DISABLED = "disabled"
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    LOADED = "loaded"


@dataclass(frozen=True)
class ModelSpec:
    """How to build one pipeline and what it is expected to cost before it was ever measured."""

    name: str
    factory: Callable[[], Pipeline]
    estimate_mb: float
    enabled: bool = True
    pinned: bool = False
    description: str = ""
    #: requests one worker runs through this model at once; the rest queue. Each running request
    #: holds its own activations, so this bounds the model's transient memory.
    max_concurrency: int = 1


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
    in_use: int = 0
    uses: int = 0
    loads: int = 0
    last_used: float | None = None
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


class Lease:
    """A checked-out pipeline; release() is idempotent so streaming responses can call it on close."""

    def __init__(self, registry: ModelRegistry, name: str, pipeline: Pipeline, start_rss_mb: float | None,
                 slot: threading.Semaphore) -> None:
        self._registry = registry
        self.name = name
        self.pipeline = pipeline
        self._slot = slot
        self._start_rss_mb = start_rss_mb  # set when this request's peak can be attributed to it alone
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._slot.release()
        self._registry._checkin(self.name, self._start_rss_mb)


EventListener = Callable[[str, str, dict[str, Any]], None]


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
        """Check a pipeline out (building it if needed); the caller must release() it."""
        pipeline = self._checkout(name)
        slot = self._slots[name]
        if not slot.acquire(timeout=self.queue_timeout_s):
            self._checkin(name)
            raise ModelSaturated(
                f"model {name!r} is busy with other requests (it serves {self._entries[name].spec.max_concurrency} "
                f"at a time to bound its memory) and none finished within {self.queue_timeout_s:g} s; retry later",
                headers={"Retry-After": str(self.retry_after_s)}, model=name)
        return Lease(self, name, pipeline, self._start_request_measurement(), slot)

    @contextmanager
    def acquire(self, name: str) -> Iterator[Pipeline]:
        """`with registry.acquire("tts") as pipe:` a model that cannot be evicted while in use."""
        lease = self.lease(name)
        try:
            yield lease.pipeline
        finally:
            lease.release()

    def load(self, name: str) -> None:
        """Build a model now (admin endpoint, pinned models); takes no request slot."""
        self._checkout(name)
        self._checkin(name)

    def _checkout(self, name: str) -> Pipeline:
        entry = self._entry_or_404(name)
        if not entry.spec.enabled:
            raise ModelDisabled(f"model {name!r} is disabled by configuration", model=name)
        self._ensure_sweeper()
        while True:
            with self._lock:
                if entry.state is ModelState.LOADED:
                    assert entry.pipeline is not None
                    entry.in_use += 1
                    entry.uses += 1
                    entry.last_used = time.time()
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
                entry.in_use += 1
                entry.uses += 1
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
        _reset_peak_rss()
        return readings.rss_mb()

    def _checkin(self, name: str, start_rss_mb: float | None = None) -> None:
        entry = self._entries[name]
        if start_rss_mb is not None:
            peak = _peak_rss_mb()
            if peak is not None:
                rise = max(0.0, peak - start_rss_mb)
                with self._lock:
                    entry.request_peak_mb = max(entry.request_peak_mb or 0.0, rise)
        with self._lock:
            entry.in_use -= 1
            entry.last_used = time.time()
            idle = entry.in_use == 0
            first_use = idle and entry.uses == 1 and entry.first_use_mb is None
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
            _reset_peak_rss()
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
            peak = _peak_rss_mb()
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

    def _make_room(self, entry: _Entry, need_mb: float) -> None:
        """Evict idle models (LRU first) until `need_mb` fits under the budget, or refuse."""
        name = entry.spec.name
        limit = self.effective_budget_mb - self.margin_mb
        # Loaded models keep head-room for their own requests' activations: admitting a model
        # into memory they will need for their next request is what OOM-kills a worker.
        used = self.memory.used_mb() + self._headroom_mb(entry)
        if used + need_mb <= limit:
            return
        with self._lock:
            victims = sorted(
                (e for e in self._entries.values()
                 if e is not entry and e.state is ModelState.LOADED and e.in_use == 0 and not e.spec.pinned),
                key=lambda e: e.last_used or 0.0)
            reclaimable = sum((e.measured_mb or 0.0) + e.headroom_mb() for e in victims)
        if used - reclaimable + need_mb <= limit:
            for victim in victims:
                self._unload(victim, reason="evicted")
                used = self.memory.used_mb() + self._headroom_mb(entry)
                if used + need_mb <= limit:
                    return
        self._emit("refuse", name, mb=need_mb)
        budget = self.effective_budget_mb
        logger.warning("event=model_refused model=%s needed_mb=%.0f used_mb=%.0f budget_mb=%.0f margin_mb=%.0f",
                       name, need_mb, used, budget, self.margin_mb)
        raise BudgetExceeded(
            f"model {name!r} needs about {need_mb:.0f} MB but only {max(0.0, limit - used):.0f} MB of the "
            f"{budget:.0f} MB budget is free (models in use cannot be evicted); retry later",
            headers={"Retry-After": str(self.retry_after_s)},
            model=name, needed_mb=round(need_mb), used_mb=round(used), budget_mb=round(budget),
            margin_mb=round(self.margin_mb))

    def _headroom_mb(self, entry: _Entry) -> float:
        with self._lock:
            return sum(e.headroom_mb() for e in self._entries.values()
                       if e is not entry and e.state is ModelState.LOADED)

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
        """Stop the sweeper and unload everything idle (worker exit, tests)."""
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


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so the next reading is this build's peak.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
