"""Voice analysis end to end: HTTP -> decode -> registry-built tiny Whisper / AST -> JSON."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf

from backend.registry import get_registry

pytest.importorskip("torch")
pytest.importorskip("transformers")

SR = 16000
CONTRACT_KEYS = {"status", "language", "classification", "confidenceScore", "explanation"}


def encode(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def speech_samples(speech_wav) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(speech_wav), dtype="float32")
    return samples, rate


@pytest.fixture(scope="module")
def speech_mp3(speech_samples) -> bytes:
    return encode(*speech_samples, fmt="MP3", subtype="MPEG_LAYER_III")


@pytest.fixture
def app_factory(make_app, whisper_checkpoint, ast_checkpoint):
    def make(**overrides):
        settings = {"whisper_model": str(whisper_checkpoint), "ai_voice_model": str(ast_checkpoint),
                    "memory_budget_mb": 65536, "backend": "torch", **overrides}
        return make_app(**settings)
    return make


@pytest.fixture(scope="module")
def shared_app(whisper_checkpoint, ast_checkpoint, tmp_path_factory):
    """One app whose registry keeps its models between tests (building them is the slow part)."""
    from backend import create_app
    from config import build_settings

    app = create_app(build_settings(whisper_model=str(whisper_checkpoint), ai_voice_model=str(ast_checkpoint),
                                    memory_budget_mb=65536, backend="torch", model_ttl_s=-1,
                                    prometheus_multiproc_dir=None, max_audio_seconds=120, max_upload_mb=2,
                                    api_keys="secret-key", state_dir=tmp_path_factory.mktemp("state"),
                                    rate_limit=""))
    app.config["TESTING"] = True
    yield app
    get_registry(app).shutdown()


@pytest.fixture
def client(shared_app):
    client = shared_app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = "secret-key"
    return client


# --- the three analysis endpoints ------------------------------------------------------------------
def test_detect_language_multipart(client, speech_wav) -> None:
    response = client.post("/api/detect-language", data={"file": (io.BytesIO(speech_wav), "speech.wav"), "top_k": "3"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "success" and body["language"] == "de"
    assert len(body["languages"]) == 3 and body["languages"][0] == {"language": "de", "probability": body["probability"]}
    assert body["windows"] == 1 and body["languages_considered"] == 99
    assert body["input"]["format"] == "WAV" and body["input"]["sample_rate_hz"] == 22050
    assert body["seconds_analysed"] == pytest.approx(body["input"]["seconds"], abs=1e-3)


def test_detect_language_json_base64_mp3_sums_to_one(client, speech_mp3) -> None:
    response = client.post("/api/detect-language", json={"audioBase64": base64.b64encode(speech_mp3).decode(),
                                                         "top_k": 200})
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["input"]["format"] == "MP3" and len(body["languages"]) == 99
    assert sum(row["probability"] for row in body["languages"]) == pytest.approx(1.0, abs=1e-4)


def test_detect_language_raw_body_with_allowed_languages(client, speech_samples) -> None:
    flac = encode(*speech_samples, fmt="FLAC")
    response = client.post("/api/detect-language?allowed_languages=en,fr,es&top_k=2", data=flac,
                           content_type="application/octet-stream")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["language"] in {"en", "fr", "es"} and body["languages_considered"] == 3 and len(body["languages"]) == 2


def test_detect_language_long_audio_is_windowed(client, speech_samples) -> None:
    samples, rate = speech_samples
    long = np.tile(samples, int(np.ceil(65 * rate / samples.size)))[:65 * rate]
    flac = encode(long, rate, "FLAC")  # a 65 s wav would exceed the app's 2 MB MAX_UPLOAD_MB
    body = client.post("/api/detect-language", data=flac, content_type="audio/flac").get_json()
    assert body["windows"] == 3 and body["seconds_analysed"] == pytest.approx(65.0, abs=0.01)


def test_detect_ai_voice(client, speech_wav) -> None:
    response = client.post("/api/detect-ai-voice", data={"file": (io.BytesIO(speech_wav), "x.bin")})
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "success" and body["synthetic_labels"] == ["spoof"] and body["activation"] == "softmax"
    assert 0 <= body["score_mean"] <= body["score_max"] <= 1 and body["score"] == body["score_mean"]
    assert body["is_ai_generated"] == (body["score"] >= body["threshold"]) and body["threshold"] == 0.5
    # ~4 s of speech: 2.575 s windows every 1.2875 s, the last flush with the end -> 3
    assert body["windows"] == 3 and "ast" in body["model"]
    listed = {row["name"]: row for row in client.get("/api/models").get_json()["models"]}
    # /api/models names the model that answered (a folder by its last part only) and says plainly that no
    # real AST weights were available to measure its accuracy (issue 14).
    assert listed["ai_voice"]["model_name"] == "local folder ast0"  # tmp_path_factory.mktemp("ast")
    assert listed["ai_voice"]["accuracy"].startswith("not measured by this project: no real AST weights")


def test_detect_ai_voice_long_audio_windows(client, speech_samples) -> None:
    samples, rate = speech_samples
    ten = np.tile(samples, 5)[:10 * rate]
    body = client.post("/api/detect-ai-voice", data=encode(ten, rate, "OGG", "VORBIS"),
                       content_type="audio/ogg").get_json()
    assert body["windows"] == 7 and body["seconds_analysed"] == pytest.approx(10.0, abs=0.01)
    assert len(body["window_scores"]) == 7


def test_analyze_runs_both_on_one_decode(client, speech_wav) -> None:
    response = client.post("/api/analyze", data={"file": (io.BytesIO(speech_wav), "speech.wav"), "top_k": "2"})
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "success" and body["input"]["format"] == "WAV"
    assert body["language"]["language"] == "de" and len(body["language"]["languages"]) == 2
    assert {"score", "is_ai_generated", "windows"} <= set(body["ai_voice"])


def test_models_are_built_by_the_registry_once(client, shared_app, speech_wav) -> None:
    client.post("/api/analyze", data=speech_wav, content_type="audio/wav")
    rows = {row["name"]: row for row in get_registry(shared_app).snapshot()}
    assert rows["language"]["state"] == "loaded" and rows["ai_voice"]["state"] == "loaded"
    assert rows["language"]["loads"] == 1 and rows["ai_voice"]["loads"] == 1
    assert "whisper" in rows["language"]["model"] and rows["language"]["int8"] is False


# --- disabled ---------------------------------------------------------------------------------------
def test_disabled_language_never_answers_a_language(app_factory, speech_wav) -> None:
    client = app_factory(enable_language_detection=False).test_client()
    response = client.post("/api/detect-language", data=speech_wav, content_type="audio/wav")
    body = response.get_json()
    assert response.status_code == 503 and body["status"] == "disabled"
    assert body["error"]["code"] == "model_disabled" and "language" not in {k for k in body if k != "error"} - {"status"}
    both = client.post("/api/analyze", data=speech_wav, content_type="audio/wav").get_json()
    assert both["language"] == {"status": "disabled", "model": "language",
                                "message": "language is disabled by configuration"}
    assert "score" in both["ai_voice"]


def test_disabled_ai_voice_and_both(app_factory, speech_wav) -> None:
    client = app_factory(enable_ai_voice_detection=False, enable_language_detection=False).test_client()
    assert client.post("/api/detect-ai-voice", data=speech_wav, content_type="audio/wav").get_json()["status"] == "disabled"
    response = client.post("/api/analyze", data=speech_wav, content_type="audio/wav")
    assert response.status_code == 503 and response.get_json()["status"] == "disabled"
    contract = client.post("/api/voice-detection", json={"language": "English", "audioFormat": "wav",
                                                         "audioBase64": base64.b64encode(speech_wav).decode()})
    assert contract.status_code == 503 and set(contract.get_json()) == {"status", "message"}
    assert contract.get_json()["status"] == "error"


def test_an_upload_for_a_model_without_an_export_evicts_nothing(make_app, speech_wav) -> None:
    """Issue 11: an analysis upload whose model had no export first evicted the loaded TTS."""
    from tests.fakes import fake_spec

    app = make_app([fake_spec("tts", 50)])  # onnx, and no export in the test's ONNX_DIR
    registry = get_registry(app)
    registry.load("tts")
    registry.budget_mb = registry.memory.used_mb() + 60  # language's estimate could only fit by evicting tts
    client = app.test_client()
    for path in ("/api/detect-language", "/api/detect-ai-voice", "/api/analyze"):
        response = client.post(path, data=speech_wav, content_type="audio/wav")
        assert response.status_code == 503 and response.get_json()["error"]["code"] == "model_unavailable", path
        assert "fetch_models.py" in response.get_json()["error"]["fix"]
    assert registry.state("tts").value == "loaded"
    assert all(row["loads"] == 0 for row in registry.snapshot() if row["name"] != "tts")


def test_missing_weights_are_a_503_naming_the_fix(app_factory, speech_wav, tmp_path) -> None:
    client = app_factory(whisper_model=str(tmp_path / "no-such-whisper")).test_client()
    response = client.post("/api/detect-language", data=speech_wav, content_type="audio/wav")
    body = response.get_json()
    assert response.status_code == 503 and body["error"]["code"] == "model_unavailable"
    assert "WHISPER_MODEL folder" in body["error"]["message"] and "no-such-whisper" in body["error"]["message"]
    assert body["error"]["fix"] == "`.venv/bin/python scripts/fetch_models.py --models language` (or `make models`)"


# --- bad input: clear 4xx, never a crash -----------------------------------------------------------------
def _bad_inputs(speech_samples, speech_mp3) -> list[tuple[str, bytes, int, str]]:
    samples, rate = speech_samples
    nan = samples.copy()
    nan[1000:2000] = np.nan
    return [
        ("empty", b"", 400, "invalid_audio"),
        ("text named .wav", b"this is not audio at all " * 40, 400, "invalid_audio"),
        ("header only", encode(samples, rate)[:44], 400, "invalid_audio"),
        ("truncated mp3", speech_mp3[:150], 400, "invalid_audio"),
        ("nan", encode(nan, rate, "WAV", "FLOAT"), 400, "invalid_audio"),
        ("silent", encode(np.zeros(rate * 2, dtype=np.float32), rate), 422, "unprocessable_entity"),
        ("one sample", encode(np.array([0.3], dtype=np.float32), rate), 422, "unprocessable_entity"),
        ("too long", encode(np.zeros(8000 * 130, dtype=np.float32), 8000, "FLAC"), 413, "payload_too_large"),
    ]


@pytest.mark.parametrize("path", ["/api/detect-language", "/api/detect-ai-voice", "/api/analyze"])
def test_bad_audio_gets_a_clear_4xx(client, speech_samples, speech_mp3, speech_wav, path) -> None:
    for name, data, status, code in _bad_inputs(speech_samples, speech_mp3):
        response = client.post(path, data={"file": (io.BytesIO(data), "audio.wav")})
        body = response.get_json()
        assert response.status_code == status, (name, body)
        assert body["error"]["code"] == code and body["error"]["message"], name
    assert client.post(path, data=speech_wav, content_type="audio/wav").status_code == 200  # the worker is fine


def test_request_shape_errors(client, speech_wav) -> None:
    cases = [
        (dict(json={"top_k": 3}), 400, "audioBase64"),
        (dict(json={"audioBase64": "not base64 !!!"}), 400, "base64"),
        (dict(json={"audioBase64": 12}), 400, "audioBase64"),
        (dict(data="{broken", content_type="application/json"), 400, "JSON"),
        (dict(data={"upload": (io.BytesIO(speech_wav), "a.wav")}), 400, "'file'"),
        (dict(json={"audioBase64": base64.b64encode(speech_wav).decode(), "top_k": 0}), 400, "top_k"),
        (dict(json={"audioBase64": base64.b64encode(speech_wav).decode(), "allowed_languages": ["en", "klingon"]}),
         400, "klingon"),
    ]
    for kwargs, status, words in cases:
        response = client.post("/api/detect-language", **kwargs)
        assert response.status_code == status, (kwargs, response.get_json())
        assert words in response.get_json()["error"]["message"]


def test_data_url_prefix_is_accepted(client, speech_mp3) -> None:
    url = "data:audio/mpeg;base64," + base64.b64encode(speech_mp3).decode()
    assert client.post("/api/detect-ai-voice", json={"audioBase64": url}).status_code == 200


def test_oversize_body_is_413(client) -> None:
    response = client.post("/api/detect-language", data=b"\0" * (3 * 1024 * 1024), content_type="audio/wav")
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "payload_too_large"


def test_api_key_is_required(shared_app, speech_wav) -> None:
    response = shared_app.test_client().post("/api/detect-language", data=speech_wav, content_type="audio/wav")
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"


# --- /api/voice-detection: the contract its clients speak ---------------------------------------------------
def _contract_body(audio: bytes, **overrides) -> dict:
    return {"language": "Tamil", "audioFormat": "mp3", "audioBase64": base64.b64encode(audio).decode(), **overrides}


def test_voice_detection_contract(client, speech_mp3) -> None:
    response = client.post("/api/voice-detection", json=_contract_body(speech_mp3))
    body = response.get_json()
    assert response.status_code == 200, body
    assert set(body) == CONTRACT_KEYS
    assert body["status"] == "success" and body["language"] == "Tamil"
    assert body["classification"] in {"AI_GENERATED", "HUMAN"}
    assert isinstance(body["confidenceScore"], float) and 0.5 <= body["confidenceScore"] <= 1.0
    assert isinstance(body["explanation"], str) and "threshold" in body["explanation"]
    detail = client.post("/api/detect-ai-voice", json={"audioBase64": _contract_body(speech_mp3)["audioBase64"]}).get_json()
    assert body["classification"] == ("AI_GENERATED" if detail["is_ai_generated"] else "HUMAN")
    expected = detail["score"] if detail["is_ai_generated"] else 1 - detail["score"]
    assert body["confidenceScore"] == pytest.approx(expected, abs=1e-3)


def test_voice_detection_classifies_with_a_biased_model(app_factory, tmp_path, speech_mp3) -> None:
    from scripts.checkpoints.ast import build_ast_checkpoint

    for bias, expected in ((6.0, "AI_GENERATED"), (-6.0, "HUMAN")):
        folder = build_ast_checkpoint(tmp_path / str(bias), synthetic_bias=bias)
        client = app_factory(ai_voice_model=str(folder)).test_client()
        body = client.post("/api/voice-detection", json=_contract_body(speech_mp3)).get_json()
        assert body["classification"] == expected and body["confidenceScore"] > 0.95


def test_voice_detection_errors_use_its_envelope(client, shared_app, speech_mp3) -> None:
    good = _contract_body(speech_mp3)
    anonymous = shared_app.test_client()
    cases = [
        (anonymous.post("/api/voice-detection", json=good), 401),
        (anonymous.post("/api/voice-detection", json=good, headers={"x-api-key": "wrong"}), 401),
        (client.post("/api/voice-detection", data="language=Tamil", content_type="text/plain"), 415),
        (client.post("/api/voice-detection", json=[1, 2]), 400),
        (client.post("/api/voice-detection", json={k: v for k, v in good.items() if k != "language"}), 400),
        (client.post("/api/voice-detection", json={k: v for k, v in good.items() if k != "audioBase64"}), 400),
        (client.post("/api/voice-detection", json={**good, "audioFormat": "exe"}), 400),
        (client.post("/api/voice-detection", json={**good, "audioBase64": "%%%"}), 400),
        (client.post("/api/voice-detection", json=_contract_body(b"GIF89a" + bytes(500))), 400),
        (client.post("/api/voice-detection", json=_contract_body(encode(np.zeros(SR, dtype=np.float32), SR))), 422),
        (client.post("/api/voice-detection", data=b"{" + b" " * (3 * 1024 * 1024) + b"}",
                     content_type="application/json"), 413),
    ]
    for response, status in cases:
        body = response.get_json()
        assert response.status_code == status, body
        assert set(body) == {"status", "message"} and body["status"] == "error" and body["message"]


# --- added by helper B: containers by content, and one decode per /api/analyze ----------------------
@pytest.mark.parametrize("fmt, subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III")])
def test_containers_are_recognised_by_content(client, speech_samples, fmt, subtype) -> None:
    samples, rate = speech_samples
    if subtype == "OPUS":  # opus only takes 8/12/16/24/48 kHz
        import soxr
        samples, rate = soxr.resample(samples, rate, 48000), 48000
    # a wrong declared type and file name change nothing: the bytes decide
    response = client.post("/api/detect-ai-voice", data={"file": (io.BytesIO(encode(samples, rate, fmt, subtype)), "x.wav")},
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["input"]["format"] == fmt


def test_analyze_decodes_exactly_once(client, speech_wav, monkeypatch) -> None:
    from backend.api import analysis

    calls = []
    real = analysis.decode_audio
    monkeypatch.setattr(analysis, "decode_audio", lambda *a, **k: calls.append(1) or real(*a, **k))
    body = client.post("/api/analyze", data=speech_wav, content_type="application/octet-stream").get_json()
    assert calls == [1] and body["language"]["language"] == "de" and "score" in body["ai_voice"]


def _wav_header(channels: int, rate: int, data_bytes: int) -> bytes:
    """A PCM16 WAV header declaring `channels` x `rate`, then `data_bytes` of zeros."""
    import struct
    block = channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_bytes) + b"\0" * data_bytes)


def test_a_hostile_header_is_refused_before_decoding(client, monkeypatch) -> None:
    """1024 channels at 768 kHz (it added 120 MB per upload): the header is read, nothing is decoded."""
    import backend.api.analysis as analysis

    monkeypatch.setattr(analysis, "decode_audio", lambda *a, **k: pytest.fail("decoded a refused upload"))
    for channels, rate, words in ((1024, 48000, "MAX_AUDIO_CHANNELS"), (2, 768000, "MAX_AUDIO_SAMPLE_RATE")):
        response = client.post("/api/detect-ai-voice", data=_wav_header(channels, rate, channels * 2 * 100),
                               content_type="application/octet-stream")
        assert response.status_code == 400 and response.json["error"]["code"] == "invalid_audio"
        assert words in response.json["error"]["message"]


def test_decoding_is_admitted_against_the_budget(app_factory, speech_wav, monkeypatch) -> None:
    """No room for the decode's buffers: 503 memory_budget_exceeded before a sample is decoded; nothing reserved."""
    import backend.api.analysis as analysis
    from tests.conftest import budget_above_now

    app = app_factory()
    registry = get_registry(app)
    registry.budget_mb = budget_above_now(0) - 200  # below what the process holds: nothing can be admitted
    monkeypatch.setattr(analysis, "decode_audio", lambda *a, **k: pytest.fail("decoded without room"))
    response = app.test_client().post("/api/detect-ai-voice", data=speech_wav, content_type="audio/wav")
    assert response.status_code == 503 and response.json["error"]["code"] == "memory_budget_exceeded"
    assert "audio decode" in response.json["error"]["message"] and int(response.headers["Retry-After"]) > 0
    assert registry.gate.jobs() == {}


def test_availability_is_checked_before_the_upload_is_read(make_app) -> None:
    """No export (offline): 503 model_unavailable, even for an upload whose header would be refused."""
    response = make_app().test_client().post("/api/detect-language", data=_wav_header(1024, 48000, 4096),
                                             content_type="application/octet-stream")
    assert response.status_code == 503 and response.json["error"]["code"] == "model_unavailable"


def test_a_chunked_upload_over_max_upload_mb_is_413_not_cut(app_factory) -> None:
    """No Content-Length (chunked): Werkzeug's stream stopped at the limit and the cut audio was analysed (200)."""
    client = app_factory(max_upload_mb=1).test_client()
    body = io.BytesIO(_wav_header(1, 16000, 2 * 1024 * 1024))
    response = client.post("/api/detect-ai-voice", input_stream=body, content_type="application/octet-stream",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})  # as Gunicorn says of chunked bodies
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"
