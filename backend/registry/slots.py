"""Slots: how many requests each model runs at once, and a bounded queue for the rest.

A bounded queue and a bounded wait (Ollama's OLLAMA_MAX_QUEUE): a slow inference or many clients
cannot hold every thread of the worker, so /health and other models still answer.
"""
from __future__ import annotations

import threading

from backend.errors import ModelBusy
from backend.registry.policy import Policy
from backend.registry.spec import ModelSpec


class Slots:
    """Per model: a semaphore of places (max_concurrency, or `admitted` for a model that takes turns by piece),
    and the count of requests waiting for one (MAX_QUEUE)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._slots: dict[str, threading.Semaphore] = {}
        self._waiting: dict[str, int] = {}  # requests waiting for each model's slot now
        self._lock = threading.Lock()

    def add(self, spec: ModelSpec) -> None:
        # A model whose pipeline takes turns by piece admits more requests than it runs at once: a slot
        # here is a place among the admitted, and the pipeline's PieceTurns bounds what runs (memory).
        self._slots[spec.name] = threading.BoundedSemaphore(max(spec.admitted, spec.max_concurrency))

    def waiting(self, name: str) -> int:
        with self._lock:
            return self._waiting.get(name, 0)

    def take(self, spec: ModelSpec) -> threading.Semaphore:
        """A slot of `spec`'s model, waiting in its queue up to QUEUE_TIMEOUT_S; the caller releases it.

        Raises:
            ModelBusy: MAX_QUEUE requests already wait, or none finished in time.
        """
        slot = self._slots[spec.name]
        if not slot.acquire(blocking=False):
            self.join(spec)
            try:
                got = slot.acquire(timeout=self.policy.queue_timeout_s)
            finally:
                self.leave(spec.name)
            if not got:
                raise self.busy(spec, f"none finished within {self.policy.queue_timeout_s:g} s (QUEUE_TIMEOUT_S)")
        return slot

    def join(self, spec: ModelSpec) -> None:
        """Count one more request waiting for `spec`'s model; 503 model_busy if MAX_QUEUE already wait.

        Both waits that count in MAX_QUEUE join here: a busy slot, and a model drained for a build.
        """
        with self._lock:
            if self._waiting.get(spec.name, 0) >= self.policy.max_queue:
                raise self.busy(spec, f"{self.policy.max_queue} request(s) already wait for it (MAX_QUEUE)")
            self._waiting[spec.name] = self._waiting.get(spec.name, 0) + 1

    def leave(self, name: str) -> None:
        with self._lock:
            self._waiting[name] -= 1

    def busy(self, spec: ModelSpec, why: str) -> ModelBusy:
        serves = (f"it admits {spec.admitted} request(s) at a time, which take turns piece by piece"
                  if spec.admitted else f"it serves {spec.max_concurrency} request(s) at a time to bound its memory")
        return ModelBusy(f"model {spec.name!r} is busy ({serves}) and {why}; retry later",
                         headers={"Retry-After": str(self.policy.retry_after_s)}, model=spec.name)
