"""EventLog: the registry's recent events (loads, unloads, evictions, refusals, ...), newest last.

A bounded ring buffer kept per process, fed by the registry's listener hook, so the operator
panel can show what happened without reading logs. With several workers each keeps its own.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

MAX_EVENTS = 50  # what the operator panel shows; older events stay in the log lines


class EventLog:
    """The last MAX_EVENTS registry events, each {"at", "event", "model", facts...}."""

    def __init__(self, size: int = MAX_EVENTS) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def record(self, event: str, model: str, facts: dict[str, Any]) -> None:
        """Registry listener: keep one event, figures rounded to 0.1 as the snapshot shows them."""
        shown = {k: round(v, 1) if isinstance(v, float) else v for k, v in facts.items()}
        with self._lock:
            self._events.append({"at": time.time(), "event": event, "model": model, **shown})

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)
