"""The registry's events (loads, unloads, evictions, refusals, ...): who hears them, and the recent ones.

Listeners are called on each event; EventLog, one of them, is a bounded ring buffer kept per
process so the operator panel can show what happened without reading logs. With several workers
each keeps its own.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

MAX_EVENTS = 50  # what the operator panel shows; older events stay in the log lines

EventListener = Callable[[str, str, dict[str, Any]], None]


class Listeners:
    """Who is told of each registry event: listener(event, model, facts)."""

    def __init__(self) -> None:
        self._listeners: list[EventListener] = []

    def subscribe(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def emit(self, event: str, name: str, **facts: Any) -> None:
        """Call each listener; one that fails is logged and the others still hear it."""
        for listener in self._listeners:
            try:
                listener(event, name, facts)
            except Exception:
                logger.exception("registry listener failed on %s", event)


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
