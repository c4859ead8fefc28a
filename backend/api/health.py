"""Liveness and readiness: /health touches no model, /ready says what can be served and what cannot."""
from __future__ import annotations

import os
import time

from flask import Blueprint, jsonify

from backend.registry import get_registry

bp = Blueprint("health", __name__)
_STARTED = time.time()


@bp.get("/health")
def health():
    return jsonify(status="ok", pid=os.getpid(), uptime_s=round(time.time() - _STARTED, 1))


@bp.get("/ready")
def ready():
    """200 once pinned models are loaded and every enabled model can be served; else 503 saying why.

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
