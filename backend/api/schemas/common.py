"""Shapes every area shares: the error envelope (backend.errors writes it), loose bodies, and `validate`."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.errors import ValidationFailed


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


def validate(model: type[BaseModel], data: Any, *, where: str) -> Any:
    """`model` from `data`, or 400 invalid_request naming the first offending field and listing all."""
    if not isinstance(data, dict):
        raise ValidationFailed(f"the request {where} must be a JSON object", field=None, location=where, errors=[])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(part) for part in error["loc"]) or None, "message": error["msg"],
                   "type": error["type"]}
                  for error in exc.errors(include_url=False, include_input=False, include_context=False)]
        first = errors[0]
        where_said = f"'{first['field']}'" if first["field"] else f"the {where}"
        raise ValidationFailed(f"{where_said}: {first['message']}", field=first["field"], location=where,
                               errors=errors) from None
