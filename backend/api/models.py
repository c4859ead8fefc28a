"""Model administration: list, load and unload through the registry."""
from __future__ import annotations

from flask import Blueprint, jsonify

from backend.auth import require_api_key
from backend.registry import get_registry

bp = Blueprint("models", __name__, url_prefix="/api/models")


def _row_or_404(name: str) -> dict:
    registry = get_registry()
    registry.state(name)  # raises NotFound for unknown names
    return next(row for row in registry.snapshot() if row["name"] == name)


@bp.get("")
def list_models():
    registry = get_registry()
    return jsonify(models=registry.snapshot(), memory=registry.budget_status())


@bp.get("/<name>")
def show_model(name: str):
    return jsonify(_row_or_404(name))


@bp.post("/<name>/load")
def load_model(name: str):
    require_api_key(admin=True)
    get_registry().load(name)
    return jsonify(_row_or_404(name))


@bp.delete("/<name>")
def unload_model(name: str):
    require_api_key(admin=True)
    unloaded = get_registry().unload(name)
    return jsonify(model=_row_or_404(name), unloaded=unloaded)
