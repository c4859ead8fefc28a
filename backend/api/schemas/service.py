"""Shapes of the service's own routes: liveness, readiness and the model list (no request bodies)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Health(BaseModel):
    """Alive: this worker answers."""

    status: str
    pid: int
    uptime_s: float


class Readiness(BaseModel):
    """Whether every enabled model can be served, per model why not and the fix."""

    model_config = ConfigDict(extra="allow")

    status: str
    models: dict[str, dict[str, Any]]
    loaded: list[str]
    unservable: list[str]
    memory: dict[str, Any]


class ModelRow(BaseModel):
    """One model: state, cost and use (the admin view adds files, errors and every measured figure)."""

    model_config = ConfigDict(extra="allow")

    name: str
    state: str


class ModelList(BaseModel):
    """Every model and the service's memory against the budget."""

    model_config = ConfigDict(extra="allow")

    models: list[ModelRow]
    memory: dict[str, Any]


class Unloaded(BaseModel):
    """The model after an unload, and whether anything was unloaded."""

    model: ModelRow
    unloaded: bool
