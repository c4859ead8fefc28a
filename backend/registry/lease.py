"""A checked-out pipeline: the model cannot be evicted until the lease is released."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: the registry never imports a pipeline
    from backend.pipelines.base import Pipeline


class Lease:
    """One request's hold on a pipeline; release() is idempotent so a streaming response can call it on close."""

    def __init__(self, name: str, pipeline: Pipeline, on_release: Callable[[], None]) -> None:
        self.name = name
        self.pipeline = pipeline
        self._on_release = on_release
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._on_release()
