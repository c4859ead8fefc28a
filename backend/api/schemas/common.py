"""Shapes every area shares: the error envelope (backend.errors writes it) and loose response bodies."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    """What went wrong: a stable `code` per error class, a message for people, and details."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="one code per error class, e.g. invalid_request, model_busy")
    message: str
    field: str | None = Field(None, description="the offending request field (invalid_request)")
    errors: list[dict[str, Any]] | None = Field(None, description="every schema failure (invalid_request)")


class ErrorEnvelope(BaseModel):
    """An error: {"error": {"code", "message", ...}}."""

    model_config = ConfigDict(extra="allow")

    error: ErrorDetail


class OpenObject(BaseModel):
    """A JSON object; its fields are described in the README."""

    model_config = ConfigDict(extra="allow")
