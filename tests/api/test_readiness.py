"""Readiness a deploy can use (backend/api/health.py): what holds /ready, /ready/<model>, and `provisioning`."""
from __future__ import annotations

import subprocess
import sys

import pytest

from backend.api.health import verdict
from backend.provision import progress
from backend.registry import get_registry


def row(name: str, servable: bool, provisioning: dict | None = None) -> dict:
    return {"name": name, "enabled": True, "servable": servable, **({"provisioning": provisioning} if provisioning else {})}


@pytest.mark.parametrize(("rows", "required", "pinned_ready", "expected"), [
    ([row("tts", True), row("language", False)], [], True, "ready"),  # not required: reported, not waited for
    ([row("tts", True), row("language", False)], ["language"], True, "unservable"),
    ([row("tts", True), row("language", False, {"stage": "exporting"})], [], True, "ready"),
    ([row("tts", True), row("language", False, {"stage": "exporting"})], ["language"], True, "provisioning"),
    ([row("tts", False), row("language", False, {"stage": "exporting"})], ["tts", "language"], True, "unservable"),
    ([row("tts", True)], ["tts"], False, "starting"),
    ([row("tts", True)], ["absent"], True, "ready"),
])
def test_verdict(rows, required, pinned_ready, expected) -> None:
    assert verdict(rows, required, pinned_ready) == expected


def test_strict_readiness_requires_every_enabled_model(make_app) -> None:
    body = make_app(memory_budget_mb=16384, strict_readiness=True).test_client().get("/ready")
    assert body.status_code == 503 and body.json["status"] == "unservable"
    assert body.json["required"] == ["tts", "language", "ai_voice"]
    relaxed = make_app(memory_budget_mb=16384, enabled_models="tts", strict_readiness=True).test_client().get("/ready")
    assert relaxed.status_code == 200 and relaxed.json["required"] == ["tts"]


def test_ready_per_model(make_app) -> None:
    client = make_app(memory_budget_mb=16384, enabled_models="tts,language").test_client()
    tts = client.get("/ready/tts")
    assert tts.status_code == 200 and tts.json["status"] == "ready" and list(tts.json["models"]) == ["tts"]
    assert set(tts.json) == set(client.get("/ready").json)  # the same body fields as /ready
    language = client.get("/ready/language")
    assert language.status_code == 503 and language.json["status"] == "unservable"
    assert language.json["unservable"] == ["language"]
    assert "fetch_models.py --models language" in language.json["models"]["language"]["fix"]
    disabled = client.get("/ready/ai_voice")
    assert disabled.status_code == 503 and disabled.json["status"] == "disabled"
    assert client.get("/ready/nope").status_code == 404


def test_a_model_being_provisioned_shows_it_everywhere_and_holds_readiness_only_if_required(make_app) -> None:
    app = make_app(memory_budget_mb=16384, enabled_models="tts,language", admin_api_keys="secret")
    settings = app.config["SETTINGS"]
    progress.write(settings, "language", state="running", stage="exporting", percent=45.0, started_at=1.0)
    client = app.test_client()
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["provisioning"] == ["language"] and ready.json["unservable"] == []
    shown = ready.json["models"]["language"]["provisioning"]
    assert shown["state"] == "running" and shown["stage"] == "exporting" and shown["percent"] == 45.0
    one = client.get("/ready/language")
    assert one.status_code == 503 and one.json["status"] == "provisioning"
    models = {m["name"]: m for m in client.get("/api/models").json["models"]}
    assert models["language"]["provisioning"]["stage"] == "exporting" and models["tts"]["provisioning"] is None
    operator = {m["name"]: m for m in client.get("/api/operator").json["models"]}
    assert operator["language"]["provisioning"]["percent"] == 45.0
    required = make_app(memory_budget_mb=16384, enabled_models="tts,language", ready_requires="language",
                        state_dir=settings.state_root).test_client().get("/ready")
    assert required.status_code == 503 and required.json["status"] == "provisioning"


def test_a_provisioning_whose_process_is_gone_reads_as_interrupted(make_app) -> None:
    app = make_app(memory_budget_mb=16384, enabled_models="tts,language")
    settings = app.config["SETTINGS"]
    record = progress.write(settings, "language", state="running", stage="fetching", percent=5.0)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = child.pid  # a process that has ended
    progress.path_for(settings, "language").write_text(
        progress.path_for(settings, "language").read_text().replace(f'"pid": {record["pid"]}', f'"pid": {gone}'))
    body = app.test_client().get("/ready").json
    assert body["provisioning"] == [] and body["unservable"] == ["language"]
    assert body["models"]["language"]["last_provisioning"]["state"] == "interrupted"



def test_readiness_is_remembered_until_provisioning_writes_and_a_request_checks_a_missing_model_again(make_app) -> None:
    """Issue 26: a probe no longer scans every model's files and packages; provisioning's end is seen."""
    app = make_app(memory_budget_mb=16384, enabled_models="tts,language")
    settings = app.config["SETTINGS"]
    client = app.test_client()
    assert client.get("/ready/language").json["status"] == "unservable"
    export = settings.onnx_root / "whisper"
    export.mkdir(parents=True)
    (export / "model.onnx").write_bytes(b"onnx")
    (export / "meta.json").write_text("{}")
    assert client.get("/ready/language").json["status"] == "unservable"  # remembered: nothing said it changed
    progress.write(settings, "language", state="done", stage="done", percent=100.0)  # provisioning ends
    assert client.get("/ready/language").status_code == 200
    (export / "model.onnx").unlink()
    (export / "meta.json").unlink()
    progress.write(settings, "language", state="failed", reason="removed")
    assert client.get("/ready/language").json["status"] == "unservable"
    (export / "model.onnx").write_bytes(b"onnx")  # copied in by hand: no provisioning
    (export / "meta.json").write_text("{}")
    get_registry(app).require_available("language")  # a request's check reads the disk again
    assert client.get("/ready/language").status_code == 200
