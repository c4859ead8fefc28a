"""HTTP: one blueprint module per area, each turning HTTP into a pipeline call through the registry.

    health.py    /health (open, touches no model) and /ready (ops)
    models.py    /api/models: the list (inference), details, load, unload (admin)
    metrics.py   /metrics (Prometheus; ops)
    operator.py  /api/operator: what the operator panel at / polls (ops)
    tts.py       /v1/audio/speech, /api/tts, the voice lists
    analysis.py  language, AI-voice, both, and the /api/voice-detection contract
    docs.py      /openapi.json and the /docs page
    openapi.py   endpoint(): a view's request/response models, validated and documented
    schemas/     request and response models per area, checked before the registry is asked for anything

Each blueprint declares its auth policy once (backend.auth.protect). This module holds reading a
JSON object body for views that validate by hand.
"""
from __future__ import annotations

from typing import Any

from flask import current_app, request

from backend.errors import BadRequest, UnsupportedMediaType


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a typed 4xx error saying what is wrong with it."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"expected Content-Type: application/json, got {request.content_type or 'none'}")
    from backend.api.openapi import read_json  # bounded size and depth, no lone surrogates
    settings = current_app.config["SETTINGS"]
    body = read_json(settings.max_json_kb * 1024, settings.max_json_depth)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body
