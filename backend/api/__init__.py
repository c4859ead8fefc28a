"""HTTP: one blueprint module per area, each turning HTTP into a pipeline call through the registry.

    health.py    /health (touches no model) and /ready
    models.py    /api/models: list, load, unload
    metrics.py   /metrics (Prometheus)
    tts.py       /v1/audio/speech, /api/tts, the voice lists
    analysis.py  language, AI-voice, both, and the /api/voice-detection contract
    schemas/     request shapes per area, checked before the registry is asked for anything

This module holds what the blueprints share: reading a JSON object body.
"""
from __future__ import annotations

from typing import Any

from flask import request

from backend.errors import BadRequest, UnsupportedMediaType


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a typed 4xx error saying what is wrong with it."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"expected Content-Type: application/json, got {request.content_type or 'none'}")
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("request body is not valid JSON")
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body
