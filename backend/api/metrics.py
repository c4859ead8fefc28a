"""Prometheus metrics over HTTP: GET /metrics (the collectors live in backend.memory.metrics)."""
from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from backend.memory.metrics import exposition

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    return Response(exposition(), mimetype=CONTENT_TYPE_LATEST)
