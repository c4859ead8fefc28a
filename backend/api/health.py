"""Liveness and readiness: /health touches no model and is open; /ready says what can be served (ops policy).

Readiness is for a deploy's probe: `GET /ready` is 200 once everything this box can serve is servable.
A model this box cannot serve (no weights offline, too large for the budget) is listed with its reason
and fix but holds readiness only when it is required: READY_REQUIRES (e.g. tts,language), every enabled
model with STRICT_READINESS (Triton's --strict-readiness), and the pinned models (PRELOAD_MODELS). A
model being provisioned beside the server (backend/provision) shows `provisioning` {stage, percent} and
holds readiness only when required. `GET /ready/<model>` answers for one model (Triton's
/v2/models/<name>/ready): 200 when it is servable, else 503, with the same body fields.

Probes are polled every few seconds for the life of the service, and on a 0.1 CPU box their CPU is
the synthesis's: each model's availability is remembered (backend/registry/readiness.py:
CachedAvailability, checked again when provisioning writes or the model's state changes), the
service's memory is read once per /ready, and /health reads nothing (docs/BENCHMARKS.md, issue 26).
"""
from __future__ import annotations

import os
import time
from collections.abc import Collection
from typing import Any

from flask import Blueprint, current_app, jsonify

from backend.api.openapi import endpoint
from backend.api.schemas.service import Health, Readiness
from backend.auth import Policy, protect
from backend.provision.progress import last_outcome, provisioning
from backend.registry import get_registry

bp = protect(Blueprint("health", __name__), Policy.OPEN)
ready_bp = protect(Blueprint("ready", __name__), Policy.OPS)
_STARTED = time.time()


def verdict(rows: list[dict[str, Any]], required: Collection[str], pinned_ready: bool) -> str:
    """The readiness status from the per-model rows: ready, starting, provisioning or unservable.

    Only required models can hold it: one that is not servable makes it "unservable" (a disabled one
    too: the operator asked for it), one still provisioning "provisioning"; then pinned models still
    loading make it "starting". Every other model is reported, never waited for.
    """
    by_name = {row["name"]: row for row in rows}
    waiting = [by_name[name] for name in required if name in by_name and not by_name[name]["servable"]]
    if any(not row.get("provisioning") for row in waiting):
        return "unservable"
    if waiting:
        return "provisioning"
    return "ready" if pinned_ready else "starting"


def _rows() -> list[dict[str, Any]]:
    """The registry's readiness rows, with what background provisioning says of the models not servable yet."""
    settings = current_app.config["SETTINGS"]
    rows = get_registry().readiness()
    for row in rows:
        if row["enabled"] and not row["servable"]:
            running = provisioning(settings, row["name"])
            if running is not None:
                row["provisioning"] = running
            elif (outcome := last_outcome(settings, row["name"])) is not None:
                row["last_provisioning"] = outcome
    return rows


def _body(status: str, rows: list[dict[str, Any]], required: Collection[str]) -> dict[str, Any]:
    names = {row["name"] for row in rows}
    return {
        "status": status,
        "required": [name for name in required if name in names],
        "models": {row["name"]: {k: v for k, v in row.items() if k != "name"} for row in rows},
        "loaded": [row["name"] for row in rows if row["state"] == "loaded"],
        "unservable": [row["name"] for row in rows if row["enabled"] and not row["servable"]
                       and not row.get("provisioning")],
        "provisioning": [row["name"] for row in rows if row.get("provisioning")],
        "memory": get_registry().budget_status(),  # the service's memory, read once
    }


@bp.get("/health")
@endpoint(responses={200: Health})
def health():
    """Liveness: this worker answers; touches no model."""
    return jsonify(status="ok", pid=os.getpid(), uptime_s=round(time.time() - _STARTED, 1))


@ready_bp.get("/ready")
@endpoint(responses={200: Readiness, 503: Readiness})
def ready():
    """Readiness: 200 once every required model is servable and pinned ones are loaded; else 503 saying why.

    "unservable": a required model can never be admitted here (files or runtime missing, or too large
    for the budget); "provisioning": a required one is still being provisioned; "starting": pinned
    models are still loading. Models that are not required are listed with their reason and fix.
    """
    settings = current_app.config["SETTINGS"]
    rows = _rows()
    strict = [row["name"] for row in rows if row["enabled"]] if settings.strict_readiness else []
    required = list(dict.fromkeys([*strict, *settings.ready_requires, *settings.preload_models]))
    status = verdict(rows, required, get_registry().pinned_ready())
    return jsonify(_body(status, rows, required)), 200 if status == "ready" else 503


@ready_bp.get("/ready/<name>")
@endpoint(responses={200: Readiness, 503: Readiness})
def ready_model(name: str):
    """One model's readiness: 200 when it can be served now, else 503 (disabled, provisioning, unservable)."""
    get_registry().state(name)  # 404 for unknown names
    row = next(row for row in _rows() if row["name"] == name)
    status = ("ready" if row["servable"] else "disabled" if not row["enabled"]
              else "provisioning" if row.get("provisioning") else "unservable")
    return jsonify(_body(status, [row], [name])), 200 if status == "ready" else 503
