"""GET /api/operator (ops policy, like /ready): what the operator panel at / polls — memory against
the budget and the admission line, the CPU quota and the threads chosen from it, each model's
state and measured MB, the registry's recent events.

Small on purpose (the page asks every few seconds): the full per-model figures stay in
/api/models. Memory is the service's (every worker); models and events are the answering
worker's (`pid` says which).
"""
from __future__ import annotations

import os
import time

from flask import Blueprint, current_app, jsonify

from backend.api.openapi import endpoint
from backend.api.schemas.operator import OperatorModel, OperatorStatus
from backend.auth import Policy, protect
from backend.cpu_quota import cpu_quota, inference_threads
from backend.provision.progress import annotate
from backend.registry import get_registry

bp = protect(Blueprint("operator", __name__), Policy.OPS)


@bp.get("/api/operator")
@endpoint(responses={200: OperatorStatus})
def operator():
    """Memory against the budget and the admission line, the CPU quota and threads, each model's state and cost, recent registry events."""
    registry = get_registry()
    memory = registry.budget_status()
    # Admission admits a model while the service stays under this line (backend.registry.gate: Gate._make_room).
    memory["admission_limit_mb"] = round(registry.effective_budget_mb - registry.margin_mb, 1)
    memory["reserved_by_other_workers_mb"] = round(registry.peers.reserved_mb(), 1)
    rows = annotate(current_app.config["SETTINGS"], registry.snapshot())
    models = [{k: row[k] for k in OperatorModel.model_fields} for row in rows]
    settings = current_app.config["SETTINGS"]
    cpu = {**cpu_quota().describe(), "inference_threads": inference_threads(settings.inference_threads),
           "queue_timeout_s": registry.queue_timeout_s, "max_queue": registry.max_queue,
           "tts_admitted": settings.tts_admitted}
    return jsonify(at=time.time(), pid=os.getpid(), memory=memory, cpu=cpu, models=models, events=registry.events.recent())
