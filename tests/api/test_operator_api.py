"""GET /api/operator (what the operator panel polls) and the page at / with its static files."""
from __future__ import annotations

from backend.registry import get_registry
from backend.registry.events import EventLog
from tests.conftest import budget_above_now, fake_spec

ADMIN = {"x-api-key": "admin-secret"}


def test_operator_shows_memory_the_admission_line_models_and_events(make_app):
    app = make_app([fake_spec("small", 40), fake_spec("mid", 110), fake_spec("huge", 1000)],
                   admin_api_keys="admin-secret", memory_margin_mb=10, enabled_models="tts")
    registry = get_registry(app)
    client = app.test_client()
    assert client.post("/api/models/small/load", headers=ADMIN).status_code == 200
    registry.budget_mb = budget_above_now(100, registry.margin_mb)  # mid fits once small is evicted, huge never
    assert client.post("/api/models/mid/load", headers=ADMIN).status_code == 200
    assert client.post("/api/models/huge/load", headers=ADMIN).status_code == 503

    body = client.get("/api/operator").json
    memory = body["memory"]
    assert memory["admission_limit_mb"] == round(registry.effective_budget_mb - 10, 1)
    assert memory["used_mb"] > 0 and memory["budget_mb"] == round(registry.effective_budget_mb, 1)
    assert body["cpu"]["inference_threads"] >= 1 and body["cpu"]["cpus"] > 0 and body["cpu"]["source"]
    rows = {m["name"]: m for m in body["models"]}
    assert rows["mid"]["measured_mb"] > 0
    assert not {"reason", "fix", "source", "last_error"} & set(rows["huge"])  # as public as /api/models
    assert rows["small"]["state"] == "not loaded" and rows["mid"]["state"] == "loaded"
    assert rows["huge"]["state"] == "not loaded" and rows["huge"]["cost_mb"] == 1000
    events = [(e["event"], e["model"]) for e in body["events"]]
    assert events == [("load", "small"), ("evict", "small"), ("load", "mid"), ("refuse", "huge")]
    assert body["events"][-1]["mb"] == 1000.0 and body["pid"] > 0


def test_event_log_keeps_the_newest_events_rounded_as_shown():
    log = EventLog(size=3)
    for i in range(5):
        log.record("load", f"m{i}", {"mb": 10.04 + i, "seconds": 1})
    assert [e["model"] for e in log.recent()] == ["m2", "m3", "m4"]
    assert log.recent()[-1]["mb"] == 14.0 and log.recent()[-1]["seconds"] == 1


def test_the_page_and_its_files_are_served_under_a_strict_policy(make_app):
    client = make_app().test_client()
    with client.get("/") as page:  # a file response: closed when read
        html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    for testid in ("tts-text", "tts-voice", "tts-submit", "tts-audio", "analysis-file", "analysis-submit",
                   "language-chart", "ai-voice-gauge", "memory-used", "memory-chart", "error-message", "api-key"):
        assert f'data-testid="{testid}"' in html, testid
    assert "http://" not in html and "https://" not in html and "style=" not in html and "<script>" not in html
    for asset, mimetype in (("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css")):
        with client.get(asset) as response:
            data = response.get_data()
        assert response.status_code == 200 and response.mimetype == mimetype
        assert "Content-Security-Policy" in response.headers
        assert b"http://" not in data.replace(b"http://www.w3.org/2000/svg", b"") and b"https://" not in data
