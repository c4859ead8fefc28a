"""HTTP blueprints, one module per area; this module holds what they share."""
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
