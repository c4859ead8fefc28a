"""Prometheus metrics, correct with several Gunicorn workers (prometheus_client multiprocess mode).

When PROMETHEUS_MULTIPROC_DIR is set (gunicorn_config.py sets it before workers fork), each
worker writes its samples to files there and `exposition()` aggregates all of them; otherwise the
process's own registry is served (Flask dev server, tests). backend/api/metrics.py serves it.
"""
from __future__ import annotations

import glob
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from backend.memory import readings

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the variable prometheus_client itself reads

REQUEST_LATENCY = Histogram(
    "speech_api_request_seconds", "Request latency by endpoint", ["endpoint", "method", "status"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
PROCESS_RSS = Gauge("speech_api_process_rss_bytes", "Resident memory of each worker", multiprocess_mode="all")
SERVICE_MEMORY = Gauge("speech_api_service_memory_bytes", "Memory of the whole service as admission sees it",
                       multiprocess_mode="max")
BUDGET = Gauge("speech_api_memory_budget_bytes", "Memory budget of the service", multiprocess_mode="max")
MODEL_LOADED = Gauge("speech_api_model_loaded_bytes", "Measured memory of each loaded model, summed over workers",
                     ["model"], multiprocess_mode="livesum")
MODEL_LOADS = Counter("speech_api_model_loads", "Model builds", ["model"])
MODEL_EVICTIONS = Counter("speech_api_model_evictions", "Models evicted to make room or unloaded",
                          ["model", "reason"])
MODEL_REFUSALS = Counter("speech_api_model_refusals", "Builds refused because they cannot fit the budget",
                         ["model"])
MODEL_UNAVAILABLE = Counter("speech_api_model_unavailable", "Requests refused because a model's files or runtime "
                            "are missing (nothing was evicted or built)", ["model"])
WORKER_RECYCLES = Counter("speech_api_worker_recycles", "Workers that asked Gunicorn for a fresh replacement",
                          ["reason", "model"])


def on_registry_event(event: str, model: str, facts: dict[str, Any]) -> None:
    """Registry listener: keep the model counters and gauges true."""
    if event == "load":
        MODEL_LOADS.labels(model).inc()
        MODEL_LOADED.labels(model).set(facts.get("mb", 0.0) * readings.MB)
    elif event in ("evict", "unload"):
        MODEL_EVICTIONS.labels(model, facts.get("reason", event)).inc()
        MODEL_LOADED.labels(model).set(0)
    elif event == "refuse":
        MODEL_REFUSALS.labels(model).inc()
    elif event == "unavailable":
        MODEL_UNAVAILABLE.labels(model).inc()
    elif event == "recycle":
        WORKER_RECYCLES.labels("memory_retained", model).inc()


def observe_latency(endpoint: str, method: str, status: int, seconds: float) -> None:
    REQUEST_LATENCY.labels(endpoint, method, str(status)).observe(seconds)


def observe_request(endpoint: str, method: str, status: int, seconds: float, rss_bytes: float,
                    service_bytes: float, budget_bytes: float) -> None:
    observe_latency(endpoint, method, status, seconds)
    PROCESS_RSS.set(rss_bytes)
    SERVICE_MEMORY.set(service_bytes)
    BUDGET.set(budget_bytes)


def mark_process_dead(pid: int) -> None:
    """Gunicorn child_exit hook: drop a dead worker's live gauges."""
    if os.environ.get(_MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


class _WrittenFilesCollector(multiprocess.MultiProcessCollector):
    """prometheus_client's collector over the files that have been written to, not those being created."""

    def collect(self):
        # A worker that is starting (after a recycle) creates its file and sizes it in two steps: a
        # scrape in between finds 0 bytes and the library's reader raises struct.error, failing the
        # whole /metrics answer (prometheus/client_python#1199). A 0-byte file holds no sample yet.
        files = [path for path in glob.glob(os.path.join(self._path, "*.db")) if _has_bytes(path)]
        return self.merge(files, accumulate=True)


def _has_bytes(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:  # a dead worker's live gauges, removed since the glob
        return False


def exposition() -> bytes:
    """Every metric in Prometheus' text format, summed over all workers in multiprocess mode."""
    if os.environ.get(_MULTIPROC_ENV):
        registry = CollectorRegistry()
        _WrittenFilesCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return generate_latest(registry)
