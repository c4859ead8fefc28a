"""Auth applied once per blueprint: every route has a policy, and each policy lets in exactly whom it says."""
from __future__ import annotations

import logging

import pytest
from flask import Blueprint

from backend.auth import Policy, check_policies, policy_of, protect
from tests.conftest import fake_spec

INFERENCE_KEY, ADMIN_KEY = "inference-key-1", "admin-key-1"


def _routes(app, policy: Policy) -> list[tuple[str, str]]:
    """(method, path) of every route under `policy`, path arguments filled with a model name."""
    found = []
    for rule in app.url_map.iter_rules():
        if policy_of(app, rule.endpoint) is not policy:
            continue
        path = rule.rule.replace("<name>", "tts")
        found += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return found


def test_every_route_of_the_app_has_an_auth_policy(make_app):
    """Walks the URL map: a route added without `protect(bp, ...)` on its blueprint fails here (and at start)."""
    app = make_app()
    missing = [rule.rule for rule in app.url_map.iter_rules() if policy_of(app, rule.endpoint) is None]
    assert missing == []
    assert {policy_of(app, r.endpoint) for r in app.url_map.iter_rules()} >= set(Policy)


def test_an_app_with_an_unprotected_blueprint_does_not_start(make_app):
    app = make_app()
    naked = Blueprint("naked", __name__)
    naked.add_url_rule("/naked", "naked", lambda: "hi")
    app.register_blueprint(naked)
    with pytest.raises(RuntimeError, match="/naked"):
        check_policies(app)


def test_with_api_keys_every_inference_route_needs_a_key(make_app):
    """TTS included (it ignored keys before): no key and a wrong key are 401, both kinds of key pass."""
    app = make_app(api_keys=INFERENCE_KEY, admin_api_keys=ADMIN_KEY)
    client = app.test_client()
    routes = _routes(app, Policy.INFERENCE)
    assert ("POST", "/api/tts") in routes and ("POST", "/v1/audio/speech") in routes
    for method, path in routes:
        for headers in ({}, {"x-api-key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            response = client.open(path, method=method, headers=headers, json={})
            assert response.status_code == 401 and response.is_json, (method, path, headers)
        for headers in ({"x-api-key": INFERENCE_KEY}, {"Authorization": f"Bearer {ADMIN_KEY}"}):
            assert client.open(path, method=method, headers=headers, json={}).status_code not in (401, 403)


def test_admin_routes_need_an_admin_key(make_app):
    app = make_app([fake_spec("fake", 5)], api_keys=INFERENCE_KEY, admin_api_keys=ADMIN_KEY)
    client = app.test_client()
    routes = _routes(app, Policy.ADMIN)
    assert ("POST", "/api/models/tts/load") in routes and ("DELETE", "/api/models/tts") in routes
    for method, path in routes:
        for headers in ({}, {"x-api-key": INFERENCE_KEY}):
            assert client.open(path, method=method, headers=headers).status_code == 401, (method, path)
    assert client.post("/api/models/fake/load", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200


def test_admin_routes_are_refused_to_everyone_without_admin_keys(make_app):
    app = make_app(api_keys=INFERENCE_KEY)
    for method, path in _routes(app, Policy.ADMIN):
        response = app.test_client().open(path, method=method, headers={"x-api-key": INFERENCE_KEY})
        assert response.status_code == 403 and "ADMIN_API_KEYS" in response.json["error"]["message"]


def test_ready_and_metrics_are_open_unless_protect_metrics(make_app):
    open_app = make_app(api_keys=INFERENCE_KEY, memory_budget_mb=16384, enabled_models="tts")
    assert {path for _, path in _routes(open_app, Policy.OPS)} == {"/ready", "/ready/tts", "/metrics", "/api/operator"}
    assert open_app.test_client().get("/metrics").status_code == 200
    assert open_app.test_client().get("/ready").status_code in (200, 503)  # what it says, not a refusal

    closed = make_app(api_keys=INFERENCE_KEY, protect_metrics=True).test_client()
    assert closed.get("/metrics").status_code == 401 and closed.get("/ready").status_code == 401
    assert closed.get("/ready/tts").status_code == 401
    assert closed.get("/api/operator").status_code == 401
    assert closed.get("/metrics", headers={"x-api-key": INFERENCE_KEY}).status_code == 200
    assert closed.get("/health").status_code == 200  # liveness stays open: platforms probe it without keys
    nobody = make_app(protect_metrics=True).test_client()
    assert nobody.get("/metrics").status_code == 403


def test_health_and_the_api_document_are_open(make_app):
    client = make_app(api_keys=INFERENCE_KEY, admin_api_keys=ADMIN_KEY, protect_metrics=True).test_client()
    for path in ("/health", "/openapi.json", "/docs", "/", "/ui/app.js"):
        assert client.get(path).status_code == 200, path


def test_the_model_list_hides_paths_and_errors_the_admin_view_shows_them(make_app):
    app = make_app(api_keys=INFERENCE_KEY, admin_api_keys=ADMIN_KEY, memory_budget_mb=16384)
    client = app.test_client()
    public = client.get("/api/models", headers={"x-api-key": INFERENCE_KEY}).json["models"]
    language = next(row for row in public if row["name"] == "language")
    assert not {"source", "reason", "fix", "last_error", "model", "cost"} & set(language)
    assert str(app.config["SETTINGS"].onnx_root) not in str(public)
    one = client.get("/api/models/language", headers={"x-api-key": INFERENCE_KEY}).json
    assert "fix" not in one and "last_error" not in one
    assert client.get("/api/models/details", headers={"x-api-key": INFERENCE_KEY}).status_code == 401
    details = client.get("/api/models/details", headers={"x-api-key": ADMIN_KEY}).json["models"]
    assert {"source", "reason", "fix", "last_error"} <= set(next(r for r in details if r["name"] == "language"))


def test_keys_are_never_logged(make_app, caplog):
    client = make_app(api_keys=INFERENCE_KEY, admin_api_keys=ADMIN_KEY).test_client()
    with caplog.at_level(logging.DEBUG):
        for key in (INFERENCE_KEY, ADMIN_KEY, "a-wrong-key-xyz"):
            client.get("/api/models", headers={"x-api-key": key})
            client.post("/api/models/tts/load", headers={"Authorization": f"Bearer {key}"})
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert caplog.records and not any(k in logged for k in (INFERENCE_KEY, ADMIN_KEY, "a-wrong-key-xyz"))


def test_protect_registers_one_check_per_blueprint():
    bp = protect(Blueprint("x", __name__), Policy.INFERENCE)
    assert bp.auth_policy is Policy.INFERENCE and len(bp.before_request_funcs[None]) == 1
    assert protect(Blueprint("y", __name__), Policy.OPEN).before_request_funcs == {}
