"""Per-request memory log: RSS before/after, delta and percent of budget in one structured line.

The line is written when the response is closed, so a streamed TTS response is measured after
its last byte, not when its headers leave. Probes (/health, /ready, /ready/<model>: the `health` and
`ready` blueprints) touch no model and allocate nothing worth a line: they are timed for the
latency metric and read no memory (the service's memory outside a cgroup is the process tree's
PSS, ~9 CPU-ms a reading on a busy box: most of what a /health cost; Gunicorn's access log still
lists them).
"""
from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from backend.memory import metrics, readings
from backend.registry import get_registry

logger = logging.getLogger("backend.requests")

WARN_PERCENT = 80
ERROR_PERCENT = 95
# Metrics labels are bounded: any other method (clients may send any token) is one label, and so
# is every path that matches no route (scanners send thousands).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
UNMATCHED_ROUTE = "unmatched"


def init_app(app: Flask) -> None:
    app.before_request(_before)
    app.after_request(_after)


PROBE_BLUEPRINTS = frozenset({"health", "ready"})  # backend/api/health.py


def _before() -> None:
    g.started = time.perf_counter()
    if request.blueprint not in PROBE_BLUEPRINTS:
        g.rss_before_mb = readings.rss_mb()


def _after(response: Response) -> Response:
    if "started" not in g:  # a request that failed before our hook ran
        return response
    if "rss_before_mb" not in g:  # a probe: its latency only
        started, endpoint, method = g.started, request.url_rule.rule, request.method
        status = response.status_code
        response.call_on_close(lambda: metrics.observe_latency(endpoint, method, status, time.perf_counter() - started))
        return response
    registry = get_registry()
    started, rss_before = g.started, g.rss_before_mb
    endpoint = request.url_rule.rule if request.url_rule else UNMATCHED_ROUTE
    method, path, status = request.method, request.path, response.status_code
    method_label = method if method in KNOWN_METHODS else OTHER_METHOD

    def _log() -> None:
        seconds = time.perf_counter() - started
        rss_after = readings.rss_mb()
        service = registry.memory.used_mb()
        budget = registry.effective_budget_mb
        percent = 100 * service / budget
        level = logging.ERROR if percent >= ERROR_PERCENT else logging.WARNING if percent >= WARN_PERCENT else logging.INFO
        # The path is escaped by backend.logs' formatter (a decoded %0a would forge a line).
        logger.log(level, "event=request method=%s path=%s status=%d ms=%.1f rss_before_mb=%.1f rss_after_mb=%.1f "
                   "delta_mb=%+.1f service_mb=%.1f budget_mb=%.0f budget_pct=%.1f",
                   method, path, status, seconds * 1000, rss_before, rss_after, rss_after - rss_before,
                   service, budget, percent)
        metrics.observe_request(endpoint, method_label, status, seconds, rss_after * readings.MB,
                                service * readings.MB, budget * readings.MB)

    response.call_on_close(_log)
    return response
