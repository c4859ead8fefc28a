"""Model administration: list, load and unload through the registry."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from backend.auth import require_api_key

bp = Blueprint("models", __name__, url_prefix="/api/models")


def _row_or_404(name: str) -> dict:
    registry = current_app.extensions["registry"]
    registry.state(name)  # raises NotFound for unknown names
    return next(row for row in registry.snapshot() if row["name"] == name)


@bp.get("")
def list_models():
    registry = current_app.extensions["registry"]
    return jsonify(models=registry.snapshot(), memory=registry.budget_status())


@bp.get("/<name>")
def show_model(name: str):
    return jsonify(_row_or_404(name))


@bp.post("/<name>/load")
def load_model(name: str):
    require_api_key(admin=True)
    current_app.extensions["registry"].load(name)
    return jsonify(_row_or_404(name))


@bp.delete("/<name>")
def unload_model(name: str):
    require_api_key(admin=True)
    unloaded = current_app.extensions["registry"].unload(name)
    return jsonify(model=_row_or_404(name), unloaded=unloaded)
