"""API keys: `x-api-key: KEY` or `Authorization: Bearer KEY` (what the openai client sends)."""
from __future__ import annotations

import hmac

from flask import current_app, request

from backend.errors import Forbidden, Unauthorized


def presented_key() -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_api_key(*, admin: bool = False) -> None:
    """Raise unless the request carries a configured key.

    With API_KEYS empty, inference stays open (a private deployment) but admin endpoints are
    refused: loading and unloading models must never be open to the internet by default.
    """
    keys = current_app.config["SETTINGS"].api_keys
    if not keys:
        if admin:
            raise Forbidden("admin endpoints are disabled: set API_KEYS to enable them")
        return
    key = presented_key()
    if key is None:
        raise Unauthorized("missing API key: send it in the x-api-key header or as Authorization: Bearer")
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        raise Unauthorized("invalid API key")
