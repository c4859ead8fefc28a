"""A checked-out pipeline: the model cannot be evicted until the lease is released."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: the registry never imports a pipeline
    from backend.pipelines.base import Pipeline


class Lease:
    """One request's hold on a pipeline; release() is idempotent so a streaming response can call it on close.

    `size`: what the request asks (backend.registry.request_cost), measured with its peak at release.
    A lease taken before its size was known (`sized` False) must be admit()ted before the model runs.
    """

    def __init__(self, name: str, pipeline: Pipeline, *, admit: Callable[[float | None], None],
                 on_release: Callable[[float | None, bool], None], size: float | None = None,
                 sized: bool = True) -> None:
        self.name = name
        self.pipeline = pipeline
        self.size = size
        self._sized = sized
        self._admit = admit
        self._on_release = on_release
        self._released = False
        self._lock = threading.Lock()

    def admit(self, size: float | None) -> None:
        """Make room for this request's activations at `size` before the model runs (BudgetExceeded if none)."""
        self._admit(size)
        self.size, self._sized = size, True

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._on_release(self.size, self._sized)  # a request never admitted never ran the model: not measured
