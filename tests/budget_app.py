"""The real app with fake-memory models, for running under real Gunicorn (budget check, worker tests).

    FAKE_MODELS_MB="tts=80,language=60,ai_voice=400:50" \
        gunicorn -c gunicorn_config.py 'tests.budget_app:create_app()'

`create_app()` builds the real app (settings, registry, metrics, admin endpoints) and replaces the
three pipelines with fakes that hold real, touched memory: `name=SIZE` allocates SIZE MB on load
and declares SIZE as its estimate; `name=SIZE:ESTIMATE` declares a different estimate (a model
that lies about its cost, which only the cgroup catches); `name=SIZE:ESTIMATE:leak` is a model
whose memory stays resident after it is unloaded (what only a fresh worker gives back). Models missing from the list are
registered disabled. ENABLED_MODELS and PRELOAD_MODELS (pinned, built in each worker after fork)
apply as for the real pipelines. `POST /fake/<name>` runs one request through the registry:
JSON `{"hold_ms": 0..2000, "work_mb": 0..256}` keeps the model in use and allocates a request
transient.
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from flask import Blueprint, Flask, jsonify, request

from backend import create_app as create_real_app
from backend.auth import Policy, protect
from backend.errors import BadRequest
from backend.registry import ModelSpec, fixed_estimate, get_registry
from config import MODEL_NAMES
from tests.fakes import LEAKED, MB, FakePipeline

# A test-only knob, not a setting: config.Settings ignores it and the real app never reads it.
SIZES_ENV = "FAKE_MODELS_MB"
DEFAULT_SIZES = "tts=80,language=60,ai_voice=70"
MAX_HOLD_MS = 2000
MAX_WORK_MB = 256


class RequestFakePipeline(FakePipeline):
    """A FakePipeline whose requests are validated, hold the model a while and allocate a transient."""

    def preprocess(self, request: Any) -> dict[str, float]:
        if not isinstance(request, dict):
            raise BadRequest("body must be a JSON object")
        try:
            hold_ms = float(request.get("hold_ms", 0))
            work_mb = float(request.get("work_mb", 0))
        except (TypeError, ValueError) as exc:
            raise BadRequest("hold_ms and work_mb must be numbers") from exc
        if not 0 <= hold_ms <= MAX_HOLD_MS or not 0 <= work_mb <= MAX_WORK_MB:
            raise BadRequest(f"hold_ms must be 0..{MAX_HOLD_MS} and work_mb 0..{MAX_WORK_MB}")
        return {"hold_s": hold_ms / 1000, "work_mb": work_mb}

    def run(self, features: dict[str, float]) -> float:
        assert self.weights is not None
        transient = np.ones(int(features["work_mb"] * MB) // 8)  # touched, like activations
        time.sleep(features["hold_s"])
        return float(self.weights[:1000].sum() + transient[:10].sum())


class LeakyRequestFakePipeline(RequestFakePipeline):
    """Its memory stays resident after it is unloaded."""

    def close(self) -> None:
        LEAKED.append(self.weights)
        super().close()


def parse_sizes(text: str) -> dict[str, tuple[float, float, bool]]:
    """'tts=80,ai_voice=400:50,language=60:60:leak' -> {name: (size_mb, estimate_mb, leaks)}; ValueError on a bad item."""
    sizes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        size, _, rest = value.partition(":")
        estimate, _, flag = rest.partition(":")
        if name not in MODEL_NAMES:
            raise ValueError(f"{SIZES_ENV}: unknown model {name!r}; accepted: {', '.join(MODEL_NAMES)}")
        if flag not in ("", "leak"):
            raise ValueError(f"{SIZES_ENV}: {item!r}: the third field can only be 'leak'")
        sizes[name] = (float(size), float(estimate or size), flag == "leak")
    return sizes


def create_app() -> Flask:
    """The real app whose three pipelines are fake-memory models sized by FAKE_MODELS_MB."""
    app = create_real_app()
    settings = app.config["SETTINGS"]
    registry = get_registry(app)
    sizes = parse_sizes(os.environ.get(SIZES_ENV, DEFAULT_SIZES))
    for name in MODEL_NAMES:
        size_mb, estimate_mb, leaks = sizes.get(name, (0.0, 0.0, False))
        cls = LeakyRequestFakePipeline if leaks else RequestFakePipeline
        registry.register(ModelSpec(
            name=name, factory=lambda name=name, size_mb=size_mb, cls=cls: cls(name, size_mb),
            estimate=fixed_estimate(estimate_mb), enabled=name in sizes and settings.model_enabled(name),
            pinned=name in settings.preload_models, description=f"fake {size_mb:g} MB (estimate {estimate_mb:g} MB)",
            # measured costs are shared between workers under the fake's own size, never a real model's
            cost_key=lambda name=name, size_mb=size_mb: f"fake/{name}/{size_mb:g}"))
    app.register_blueprint(bp)
    return app


bp = protect(Blueprint("fake", __name__, url_prefix="/fake"), Policy.INFERENCE)


@bp.post("/<name>")
def run_fake(name: str):
    body = request.get_json(silent=True) if request.get_data() else {}  # unparsable JSON: None, refused by preprocess
    with get_registry().acquire(name) as pipe:
        result = pipe(body)
    return jsonify(model=name, pid=os.getpid(), **result)
