"""ModelHandle and Lifecycle: each model's state, single-flight builds, use counts, drains, unloads and the TTL.

One lock guards every handle (the condition on it is notified when a use count drops or a drain
ends: a build waiting for models in use, and requests held back for a model being drained, wait
on it). Whatever builds, measures or admits is given in as callables, so this module imports none
of it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from backend.errors import ModelInUse
from backend.memory import readings
from backend.registry.policy import Policy
from backend.registry.request_cost import RequestCost
from backend.registry.spec import ModelSpec, ModelState

if TYPE_CHECKING:  # typing only: the registry never imports a pipeline
    from backend.pipelines.base import Pipeline

logger = logging.getLogger(__name__)


@dataclass
class Flight:
    """One build in progress; followers wait on it and share its outcome."""

    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class ModelHandle:
    spec: ModelSpec
    state: ModelState = ModelState.NOT_LOADED
    pipeline: Pipeline | None = None
    flight: Flight | None = None
    in_use: int = 0  # requests holding it (running or queued for a slot): never evicted while > 0
    draining: int = 0  # builds waiting for it to go idle so they can evict it: new requests wait meanwhile
    uses: int = 0  # requests served through a lease, over the process's life
    loads: int = 0
    last_used: float | None = None  # last request served, or the last load: TTL and LRU count from it
    loaded_at: float | None = None
    load_s: float | None = None
    # This process's last build and its requests, written by the Meter (the snapshot shows them; the
    # CostBook keeps the worst):
    imports_mb: float | None = None  # RSS the runtime import added before the last build (0: already imported)
    measured_mb: float | None = None  # RSS after load minus before (after the import)
    anon_mb: float | None = None  # anonymous memory after load minus before
    peak_load_mb: float | None = None  # peak RSS during load minus before
    first_use_mb: float | None = None  # RSS after the first request since the load minus before the load
    request_peak_mb: float | None = None  # largest rise of peak RSS during one request (activations)
    rss_before_load_mb: float = 0.0
    load_epoch: int = -1  # the Meter's epoch when its last build ended undisturbed (-1: disturbed)
    key: str = ""  # what its measured costs are shared under (set at each admission)
    #: the largest request activations admitted since the last build (what other admissions leave room for)
    admitted: RequestCost | None = None
    last_request: RequestCost | None = None  # the figure admission used for the last request (shown)
    last_error: str | None = None

    def cost_key(self) -> str:
        return self.spec.cost_key() if self.spec.cost_key is not None else self.spec.name


class Lifecycle:
    """Every registered model's handle, and what changes its state."""

    def __init__(self, policy: Policy, *, bump_epoch: Callable[[], int], emit: Callable[..., None],
                 publish: Callable[[], None]) -> None:
        self.policy = policy
        self.handles: dict[str, ModelHandle] = {}
        self.lock = threading.Lock()
        self._idle = threading.Condition(self.lock)  # notified when a model's use count drops or a drain ends
        self._bump_epoch = bump_epoch  # an unload changes this process's memory
        self._emit = emit
        self._publish = publish  # tell the other workers what the loaded models keep
        self._sweeper_pid: int | None = None
        self._stop = threading.Event()

    def add(self, spec: ModelSpec) -> ModelHandle:
        handle = ModelHandle(spec=spec, state=ModelState.NOT_LOADED if spec.enabled else ModelState.DISABLED)
        self.handles[spec.name] = handle
        return handle

    def loaded(self) -> list[ModelHandle]:
        with self.lock:
            return [h for h in self.handles.values() if h.state is ModelState.LOADED]

    def others_held(self, handle: ModelHandle) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The other models (loaded or loading, in use), by name."""
        with self.lock:
            others = [h for h in self.handles.values() if h is not handle]
            return (tuple(h.spec.name for h in others if h.state in (ModelState.LOADED, ModelState.LOADING)),
                    tuple(h.spec.name for h in others if h.in_use))

    # --- use -----------------------------------------------------------------------------------
    def hold_or_build(self, handle: ModelHandle, *, hold: bool, build: Callable[[ModelHandle, bool], Pipeline],
                      join_queue: Callable[[ModelSpec], None], leave_queue: Callable[[str], None]) -> Pipeline:
        """The loaded pipeline (counted in use if `hold`); built once by the first caller, the others wait for it."""
        while True:
            with self.lock:
                while hold and handle.draining and handle.state is ModelState.LOADED:
                    # A build waits to evict it: let it, then build it again in turn. This wait is
                    # the model's queue (MAX_QUEUE), so waiting requests cannot hold every thread.
                    join_queue(handle.spec)
                    try:
                        self._idle.wait()
                    finally:
                        leave_queue(handle.spec.name)
                if handle.state is ModelState.LOADED:
                    assert handle.pipeline is not None
                    if hold:
                        handle.in_use += 1
                    return handle.pipeline
                flight, leader = handle.flight, handle.flight is None
                if leader:
                    flight = handle.flight = Flight()
                    handle.state = ModelState.LOADING
            assert flight is not None
            if not leader:
                flight.done.wait()
                if flight.error is not None:
                    raise flight.error
                continue  # loaded by the leader: take it like any other user
            try:
                pipeline = build(handle, hold)
            except BaseException as exc:
                with self.lock:
                    handle.state, handle.flight = ModelState.NOT_LOADED, None
                    handle.last_error = str(exc)
                flight.error = exc
                flight.done.set()
                raise
            flight.done.set()
            return pipeline

    def mark_loaded(self, handle: ModelHandle, pipeline: Pipeline, *, hold: bool, admitted: RequestCost) -> None:
        """Built: loaded (and held once if `hold`), so the next admission can wait for it or evict it;
        `admitted`: the request activations its admission made room for."""
        with self.lock:
            handle.admitted = admitted
            handle.loaded_at = time.time()
            handle.loads += 1
            handle.pipeline, handle.state, handle.flight = pipeline, ModelState.LOADED, None
            if hold:
                handle.in_use += 1
            handle.last_used = time.time()
            handle.last_error = None

    def count_use(self, handle: ModelHandle) -> None:
        with self.lock:
            handle.uses += 1
            handle.last_used = time.time()

    def touch(self, handle: ModelHandle) -> None:
        """Idle from now on: TTL and LRU count from now."""
        with self.lock:
            handle.last_used = time.time()

    def checkin(self, handle: ModelHandle, *, served: bool) -> None:
        with self.lock:
            handle.in_use -= 1
            if served:
                handle.last_used = time.time()
            idle = handle.in_use == 0
            self._idle.notify_all()
        if idle and self.policy.ttl_s == 0 and not handle.spec.pinned:
            self.unload(handle, reason="ttl")

    # --- draining: a build waits for models in use, holding new requests for them back -------------
    def wait_idle(self, names: tuple[str, ...], drained: list[ModelHandle], timeout_s: float) -> None:
        """Hold new requests for `names` back (once each, noted in `drained`) and wait until none is in use."""
        handles = [self.handles[name] for name in names]
        with self.lock:
            for handle in handles:
                if handle not in drained:
                    handle.draining += 1
                    drained.append(handle)
            self._idle.wait_for(lambda: all(h.in_use == 0 for h in handles), timeout=timeout_s)

    def end_drain(self, drained: list[ModelHandle]) -> None:
        with self.lock:
            for handle in drained:
                handle.draining -= 1
            self._idle.notify_all()

    # --- unload ----------------------------------------------------------------------------------
    def unload_now(self, handle: ModelHandle) -> bool:
        """Unload now (admin); False if it was not loaded. A model in use is refused with 409."""
        name = handle.spec.name
        with self.lock:
            if handle.state is not ModelState.LOADED:
                return False
            if handle.in_use:
                raise ModelInUse(f"model {name!r} is serving {handle.in_use} request(s); retry when idle",
                                 model=name, in_use=handle.in_use)
        return self.unload(handle, reason="admin")

    def unload(self, handle: ModelHandle, *, reason: str) -> bool:
        with self.lock:
            if handle.state is not ModelState.LOADED or handle.in_use:
                return False  # someone took it meanwhile: it stays
            pipeline, handle.pipeline = handle.pipeline, None
            handle.state, handle.admitted = ModelState.NOT_LOADED, None
            self._bump_epoch()
        before = readings.rss_mb()
        if pipeline is not None:
            pipeline.close()
        del pipeline
        readings.release_memory()
        after = readings.rss_mb()
        logger.info("event=model_unloaded model=%s reason=%s rss_before_mb=%.1f rss_after_mb=%.1f freed_mb=%.1f",
                    handle.spec.name, reason, before, after, before - after)
        self._emit("evict" if reason == "evicted" else "unload", handle.spec.name, mb=before - after, reason=reason)
        self._publish()
        return True

    # --- the TTL ---------------------------------------------------------------------------------
    def sweep_idle(self, now: float | None = None) -> list[str]:
        """Unload models idle for longer than the TTL; returns their names."""
        ttl_s = self.policy.ttl_s
        if ttl_s < 0:
            return []
        now = now or time.time()
        with self.lock:
            expired = [h for h in self.handles.values()
                       if h.state is ModelState.LOADED and h.in_use == 0 and not h.spec.pinned
                       and h.last_used is not None and now - h.last_used >= ttl_s]
        return [h.spec.name for h in expired if self.unload(h, reason="ttl")]

    def ensure_sweeper(self) -> None:
        # Threads do not survive fork: each process (worker) starts its own, once.
        ttl_s = self.policy.ttl_s
        if ttl_s <= 0 or self._sweeper_pid == os.getpid():
            return
        with self.lock:
            if self._sweeper_pid == os.getpid():
                return
            self._sweeper_pid = os.getpid()
        period = max(0.1, min(ttl_s / 4, 10.0))
        threading.Thread(target=self._sweep_forever, args=(period,), name="model-ttl", daemon=True).start()

    def _sweep_forever(self, period: float) -> None:
        while not self._stop.wait(period):
            try:
                self.sweep_idle()
            except Exception:  # the sweeper must outlive any one failed unload
                logger.exception("TTL sweep failed")

    def shutdown(self) -> None:
        """Stop the sweeper and unload every idle model."""
        self._stop.set()
        for handle in list(self.handles.values()):
            self.unload(handle, reason="shutdown")

