"""Liveness and readiness: /health touches no model and is open; /ready says what can be served (ops policy)."""
from __future__ import annotations

import os
import time

from flask import Blueprint, jsonify

from backend.api.openapi import endpoint
from backend.api.schemas.service import Health, Readiness
from backend.auth import Policy, protect
from backend.registry import get_registry

bp = protect(Blueprint("health", __name__), Policy.OPEN)
ready_bp = protect(Blueprint("ready", __name__), Policy.OPS)
_STARTED = time.time()


@bp.get("/health")
@endpoint(responses={200: Health})
def health():
    """Liveness: this worker answers; touches no model."""
    return jsonify(status="ok", pid=os.getpid(), uptime_s=round(time.time() - _STARTED, 1))


@ready_bp.get("/ready")
@endpoint(responses={200: Readiness, 503: Readiness})
def ready():
    """Readiness: 200 once pinned models are loaded and every enabled model can be served; else 503 saying why.

    "unservable": an enabled model can never be admitted (files or runtime missing, or too large
    for the budget), pinned or not; each says the one command or setting that fixes it.
    "starting": pinned models are still loading.
    """
    registry = get_registry()
    models = registry.readiness()
    unservable = [m for m in models if m["enabled"] and not m["servable"]]
    status = "unservable" if unservable else "starting" if not registry.pinned_ready() else "ready"
    body = {
        "status": status,
        "models": {m["name"]: {k: v for k, v in m.items() if k != "name"} for m in models},
        "loaded": [m["name"] for m in registry.snapshot() if m["state"] == "loaded"],
        "unservable": [m["name"] for m in unservable],
        "memory": registry.budget_status(),
    }
    return jsonify(body), 200 if status == "ready" else 503
