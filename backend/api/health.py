"""Liveness and readiness: /health touches no model, /ready says what is loaded."""
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
    """200 once every pinned model is loaded; lists loaded / available / disabled models."""
    registry = get_registry()
    models = {row["name"]: row["state"] for row in registry.snapshot()}
    is_ready = registry.pinned_ready()
    body = {
        "status": "ready" if is_ready else "starting",
        "loaded": [n for n, s in models.items() if s == "loaded"],
        "available": [n for n, s in models.items() if s in ("not loaded", "loading")],
        "disabled": [n for n, s in models.items() if s == "disabled"],
        "memory": registry.budget_status(),
    }
    return jsonify(body), 200 if is_ready else 503
