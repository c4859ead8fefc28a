"""The speech API: `create_app()` wires subsystems and builds nothing heavy."""
from __future__ import annotations

from flask import Flask

from backend.logs import LOG_FORMAT  # noqa: F401 - the one log format (the jobs runner imports it from here)
from config import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app; models are built later, by the registry, on first use."""
    from backend import auth, errors, jobs, limits, logs, web
    from backend.api import analysis, animation, captions, docs, health, metrics, models, operator, tts
    from backend.catalog import model_specs
    from backend.memory import metrics as memory_metrics
    from backend.memory import middleware
    from backend.registry import ModelRegistry
    from backend.registry.costs import CostBook
    from backend.registry.peers import Peers

    settings = settings or load_settings()
    logs.configure(settings.log_level)

    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 1024 * 1024
    app.config["MAX_FORM_PARTS"] = settings.max_form_parts
    app.json.sort_keys = False

    registry = ModelRegistry(settings.memory_budget_mb, margin_mb=settings.memory_margin_mb,
                             ttl_s=settings.model_ttl_s, retry_after_s=settings.retry_after_s,
                             queue_timeout_s=limits.queue_timeout_s(settings), max_queue=settings.max_queue,
                             workers=settings.workers,
                             costs=CostBook(settings.state_root), peers=Peers(settings.state_root))
    for spec in model_specs(settings):
        registry.register(spec)
    registry.subscribe(memory_metrics.on_registry_event)
    registry.init_app(app)
    jobs.init_app(app, jobs.make_jobs(settings, registry))

    errors.init_app(app)
    middleware.init_app(app)
    # Each blueprint declares its auth policy (backend.auth.protect); a route without one stops the app here.
    for blueprint in (health.bp, health.ready_bp, docs.bp, models.bp, models.admin_bp, metrics.bp, operator.bp,
                      tts.bp, captions.bp, analysis.bp, animation.bp, web.bp):
        app.register_blueprint(blueprint)
    auth.check_policies(app)
    limits.init_app(app)
    return app
