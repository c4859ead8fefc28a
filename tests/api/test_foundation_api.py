"""Health, readiness, model administration, metrics and the JSON error envelope, over HTTP."""
from __future__ import annotations

import subprocess
import sys

import pytest

from backend.registry import get_registry
from tests.conftest import ROOT, budget_above_now, fake_spec

ADMIN = {"x-api-key": "secret"}


def test_health_touches_no_model(make_app):
    app = make_app()
    response = app.test_client().get("/health")
    assert response.status_code == 200 and response.json["status"] == "ok"
    assert all(row["state"] != "loaded" for row in get_registry(app).snapshot())


def test_ready_says_per_model_what_can_be_served(make_app):
    app = make_app([fake_spec("fake", 5)], enable_ai_voice_detection=False, enabled_models="tts,ai_voice",
                   admin_api_keys="secret")
    client = app.test_client()
    client.post("/api/models/fake/load", headers=ADMIN)
    response = client.get("/ready")
    body = response.json
    assert response.status_code == 200 and body["status"] == "ready"
    assert body["loaded"] == ["fake"] and body["unservable"] == []
    assert body["models"]["tts"]["servable"] and "packaged Kokoro" in body["models"]["tts"]["source"]
    assert body["models"]["ai_voice"] == {"enabled": False, "state": "disabled", "servable": False,
                                          "reason": "disabled by configuration",
                                          "fix": "add ai_voice to ENABLED_MODELS (and its ENABLE_* switch)"}
    assert body["memory"]["budget_mb"] == round(get_registry(app).effective_budget_mb, 1)


def test_ready_lists_a_model_that_can_never_be_served_and_fails_only_when_it_is_required(make_app):
    """Offline with no export, language detection can never be served: /ready says so and how to fix it,
    and is 200 (everything this box can serve is servable) unless READY_REQUIRES names it."""
    body = make_app(memory_budget_mb=16384).test_client().get("/ready")
    assert body.status_code == 200 and body.json["status"] == "ready"
    assert body.json["unservable"] == ["language", "ai_voice"]
    required = make_app(memory_budget_mb=16384, ready_requires="tts,language").test_client().get("/ready")
    assert required.status_code == 503 and required.json["status"] == "unservable"
    language = body.json["models"]["language"]
    assert "no exported whisper model" in language["reason"] and "fetch_models.py --models language" in language["fix"]


def test_a_pinned_model_that_can_never_load_is_unservable_not_starting(make_app):
    app = make_app(enabled_models="tts,language", preload_models="language", memory_budget_mb=16384)
    get_registry(app).start_worker().join()  # the pinned load fails: no export
    body = app.test_client().get("/ready").json
    assert body["status"] == "unservable" and body["unservable"] == ["language"]


def test_ready_is_503_for_a_model_too_large_for_the_budget_with_strict_readiness(make_app):
    app = make_app([fake_spec("huge", 5000)], enabled_models="tts", strict_readiness=True)
    body = app.test_client().get("/ready").json
    assert body["status"] == "unservable" and body["unservable"] == ["huge"]
    assert "needs about 5000 MB" in body["models"]["huge"]["reason"]


def test_ready_is_503_until_pinned_models_are_loaded(make_app):
    app = make_app([fake_spec("pin", 5, pinned=True)], enabled_models="tts")
    client = app.test_client()
    assert client.get("/ready").status_code == 503
    get_registry(app).start_worker().join()
    assert client.get("/ready").status_code == 200


def test_models_list_shows_state_measured_mb_load_time_last_use_and_use_count(make_app):
    app = make_app([fake_spec("fake", 40)], admin_api_keys="secret")
    client = app.test_client()
    assert client.post("/api/models/fake/load", headers=ADMIN).status_code == 200
    rows = {row["name"]: row for row in client.get("/api/models").json["models"]}
    assert set(rows) >= {"tts", "language", "ai_voice", "fake"}
    fake = rows["fake"]
    assert fake["state"] == "loaded" and 30 <= fake["measured_mb"] <= 55
    # An admin load is not a use: only a request served through a lease counts.
    assert fake["load_s"] is not None and fake["last_used"] is not None and fake["use_count"] == 0
    assert rows["tts"]["state"] == "not loaded"


def test_load_and_unload_need_an_api_key(make_app):
    client = make_app([fake_spec("fake", 5)], admin_api_keys="secret").test_client()
    assert client.post("/api/models/fake/load").status_code == 401
    assert client.post("/api/models/fake/load", headers={"x-api-key": "wrong"}).status_code == 401
    assert client.post("/api/models/fake/load", headers={"Authorization": "Bearer secret"}).status_code == 200
    response = client.delete("/api/models/fake", headers=ADMIN)
    assert response.status_code == 200 and response.json["unloaded"] is True
    assert response.json["model"]["state"] == "not loaded"


def test_admin_endpoints_are_refused_when_no_keys_are_configured(make_app):
    response = make_app([fake_spec("fake", 5)]).test_client().post("/api/models/fake/load")
    assert response.status_code == 403 and "API_KEYS" in response.json["error"]["message"]


def test_a_model_that_cannot_fit_gets_503_with_retry_after(make_app):
    app = make_app([fake_spec("big", 300)], admin_api_keys="secret", memory_budget_mb=64, memory_margin_mb=0)
    get_registry(app).budget_mb = budget_above_now(100)
    response = app.test_client().post("/api/models/big/load", headers=ADMIN)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    error = response.json["error"]
    assert error["code"] == "memory_budget_exceeded" and error["model"] == "big"
    assert error["needed_mb"] == 300 and error["budget_mb"] > 0


def test_disabled_model_load_is_a_clear_503(make_app):
    client = make_app(enable_language_detection=False, admin_api_keys="secret").test_client()
    response = client.post("/api/models/language/load", headers=ADMIN)
    assert response.status_code == 503 and response.json["error"]["code"] == "model_disabled"


@pytest.mark.parametrize("method, path, status", [
    ("get", "/no/such/page", 404),
    ("post", "/health", 405),
    ("get", "/api/models/nope", 404),
])
def test_errors_are_json_never_html(make_app, method, path, status):
    response = getattr(make_app().test_client(), method)(path)
    assert response.status_code == status and response.is_json
    assert set(response.json["error"]) >= {"code", "message"}


def test_an_upload_over_max_upload_mb_gets_413_json(make_app):
    client = make_app(max_upload_mb=1, admin_api_keys="secret").test_client()
    response = client.post("/api/models/tts/load", data=b"x" * (2 * 1024 * 1024), headers=ADMIN)
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"
    assert "MAX_UPLOAD_MB" in response.json["error"]["message"]


def test_metrics_expose_memory_budget_models_and_latency(make_app):
    app = make_app([fake_spec("fake", 20)], admin_api_keys="secret")
    client = app.test_client()
    client.post("/api/models/fake/load", headers=ADMIN)
    client.get("/health").close()  # the request is measured when its response closes
    text = client.get("/metrics").get_data(as_text=True)
    for name in ("speech_api_process_rss_bytes", "speech_api_memory_budget_bytes", "speech_api_request_seconds_bucket",
                 'speech_api_model_loaded_bytes{model="fake"}', 'speech_api_model_loads_total{model="fake"}'):
        assert name in text


def test_request_log_line_has_memory_against_budget(make_app, caplog):
    client = make_app().test_client()
    with caplog.at_level("INFO", logger="backend.requests"):
        client.get("/openapi.json").close()
    line = next(r.getMessage() for r in caplog.records if r.name == "backend.requests")
    for key in ("rss_before_mb=", "rss_after_mb=", "delta_mb=", "budget_mb=512", "budget_pct="):
        assert key in line


def test_a_probe_reads_no_memory_and_is_timed(make_app, caplog):
    """Issue 26: a probe's memory line read the service's memory (the process tree's PSS outside a cgroup)."""
    app = make_app(admin_api_keys="secret")
    client = app.test_client()
    with caplog.at_level("INFO", logger="backend.requests"):
        for path in ("/health", "/ready", "/ready/tts"):
            client.get(path).close()
    assert [r for r in caplog.records if r.name == "backend.requests"] == []
    text = client.get("/metrics", headers=ADMIN).get_data(as_text=True)
    assert 'speech_api_request_seconds_count{endpoint="/health",method="GET",status="200"}' in text


def test_high_memory_is_logged_as_warning_then_error(make_app, caplog):
    app = make_app()
    registry = get_registry(app)
    used = registry.memory.used_mb()
    client = app.test_client()
    for budget, level in ((used / 0.85, "WARNING"), (used / 0.97, "ERROR")):
        registry.budget_mb = budget
        caplog.clear()
        with caplog.at_level("INFO", logger="backend.requests"):
            client.get("/openapi.json").close()
        assert [r.levelname for r in caplog.records if r.name == "backend.requests"] == [level]


def test_importing_the_app_imports_no_model_library():
    code = ("import sys; from backend import create_app; create_app(); "
            "print(','.join(m for m in ('torch', 'transformers', 'kokoro', 'onnxruntime', 'misaki') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_metrics_labels_are_bounded_whatever_clients_send(make_app):
    """Random methods and paths (3,000 made 45,000 series before): one 'other' method, one 'unmatched' route."""
    from backend.memory.metrics import exposition

    client = make_app().test_client()
    for i in range(40):
        client.open(f"/scan/{i}", method=f"M{i}X").close()  # the request is counted when its response closes
        client.get(f"/no/such/{i}").close()
    text = exposition().decode()
    series = [line for line in text.splitlines() if line.startswith("speech_api_request_seconds_count")]
    assert not any(f'M{i}X' in line or f"/no/such/{i}" in line or f"/scan/{i}" in line
                   for line in series for i in range(40))
    assert any('method="other"' in line and 'endpoint="unmatched"' in line for line in series)
