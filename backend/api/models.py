"""Model administration through the registry: the list for inference callers, load/unload and details for admins.

The public rows leave out what only an operator needs and an attacker would like: file paths,
sources, fixes and last errors. `GET /api/models/details` (admin) has everything.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from backend.api.openapi import endpoint
from backend.api.schemas.common import ErrorEnvelope
from backend.api.schemas.service import ModelList, ModelRow, Unloaded
from backend.auth import Policy, protect
from backend.provision.progress import annotate
from backend.registry import get_registry

bp = protect(Blueprint("models", __name__, url_prefix="/api/models"), Policy.INFERENCE)
admin_bp = protect(Blueprint("models_admin", __name__, url_prefix="/api/models"), Policy.ADMIN)

PUBLIC_FIELDS = ("name", "state", "description", "pinned", "servable", "cost_mb", "cost_source", "estimate_mb",
                 # the activations admission kept room for, for the last request's size, and the rule that gave them
                 "request_mb", "request_size", "request_rule",
                 "measured_mb", "load_s", "loaded_at", "last_used", "use_count", "in_use", "loads",
                 # what the loaded pipeline says of itself, less model ids and sources (local paths)
                 "model_name", "accuracy", "backend", "precision", "dtype", "g2p", "voices", "languages", "sample_rate",
                 "provisioning")


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in PUBLIC_FIELDS if key in row}


def _row_or_404(name: str) -> dict:
    registry = get_registry()
    registry.state(name)  # raises NotFound for unknown names
    return next(row for row in _snapshot() if row["name"] == name)


def _snapshot() -> list[dict[str, Any]]:
    """The registry's rows, with `provisioning` for models being provisioned beside the server."""
    return annotate(current_app.config["SETTINGS"], get_registry().snapshot())


@bp.get("")
@endpoint(responses={200: ModelList})
def list_models():
    """Every model's state, cost and use, and the memory budget."""
    registry = get_registry()
    return jsonify(models=[_public(row) for row in _snapshot()], memory=registry.budget_status())


@bp.get("/<name>")
@endpoint(responses={200: ModelRow})
def show_model(name: str):
    """One model's state, cost and use."""
    return jsonify(_public(_row_or_404(name)))


@admin_bp.get("/details")
@endpoint(responses={200: ModelList})
def model_details():
    """Every model with its files, sources, last error and every measured figure (admin)."""
    registry = get_registry()
    return jsonify(models=_snapshot(), memory=registry.budget_status())


@admin_bp.post("/<name>/load")
@endpoint(responses={200: ModelRow, 503: ErrorEnvelope})
def load_model(name: str):
    """Build a model now (admin); not a use."""
    get_registry().load(name)
    return jsonify(_row_or_404(name))


@admin_bp.delete("/<name>")
@endpoint(responses={200: Unloaded, 409: ErrorEnvelope})
def unload_model(name: str):
    """Unload a model (admin); 409 while requests use it."""
    unloaded = get_registry().unload(name)
    return jsonify(model=_row_or_404(name), unloaded=unloaded)
