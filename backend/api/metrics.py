"""Prometheus metrics over HTTP: GET /metrics (ops policy; the collectors live in backend.memory.metrics)."""
from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from backend.api.openapi import Binary, endpoint
from backend.auth import Policy, protect
from backend.memory.metrics import exposition

bp = protect(Blueprint("metrics", __name__), Policy.OPS)


@bp.get("/metrics")
@endpoint(responses={200: Binary(("text/plain",), "Prometheus text format, summed over workers")})
def metrics() -> Response:
    """Prometheus metrics of every worker."""
    return Response(exposition(), mimetype=CONTENT_TYPE_LATEST)
