"""The budget check's workload: profiles are well-formed, the generator is bounded, errors are classified."""
from __future__ import annotations

import io
import json
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import soundfile as sf
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from scripts.budget import workload

REQUEST_KEYS = {"json", "data", "files", "headers", "params"}


@pytest.mark.parametrize("name", sorted(workload.PROFILES))
def test_profiles_are_declarative_mixes(name):
    calls = workload.PROFILES[name]
    assert len({call.name for call in calls}) == len(calls)
    ctx = workload.Context(api_key="k", wav=b"RIFF")
    for call in calls:
        assert call.method in {"GET", "POST", "DELETE"} and call.path.startswith("/") and call.weight > 0
        assert set(call.build(ctx, random.Random(0))) <= REQUEST_KEYS
    assert any(call.name.startswith("bad_") for call in calls)
    assert {"/api/models/{model}/load", "/api/models/{model}"} <= {call.path for call in calls}


def test_the_speech_profile_covers_every_public_endpoint():
    paths = {(call.method, call.path) for call in workload.SPEECH}
    assert {("POST", "/v1/audio/speech"), ("POST", "/api/tts"), ("GET", "/api/voices"),
            ("POST", "/api/detect-language"), ("POST", "/api/detect-ai-voice"), ("POST", "/api/analyze"),
            ("POST", "/api/voice-detection"), ("GET", "/api/models")} <= paths
    long_tts = next(call for call in workload.SPEECH if call.name == "tts_long")
    short_tts = next(call for call in workload.SPEECH if call.name == "tts_short")
    ctx = workload.Context(api_key="k", wav=b"")
    assert len(long_tts.build(ctx, random.Random(0))["json"]["text"]) > 5 * len(
        short_tts.build(ctx, random.Random(0))["json"]["input"])


@pytest.mark.parametrize("make", [workload.speech_wav, lambda: workload._wav_bytes(workload.voiced_signal(3.0))])
def test_test_speech_is_three_seconds_of_16_khz_mono_wav(make):
    audio, rate = sf.read(io.BytesIO(make()), dtype="float32")
    assert rate == workload.SAMPLE_RATE and audio.ndim == 1
    assert 2.0 <= len(audio) / rate <= 3.0
    assert 0.05 < abs(audio).max() <= 1.0 and abs(audio).mean() > 0.005  # sound, not silence


# A stand-in server: /ok answers 200, /refuse like a budget refusal, /boom with an error envelope;
# it notes the key every request came with.
KEYS_SEEN: list[tuple[str, str | None]] = []


def _app(environ, start_response):
    request = Request(environ)
    KEYS_SEEN.append((request.path, request.headers.get("x-api-key")))
    time.sleep(0.005)
    if request.path == "/refuse":
        response = Response("{}", 503, {"Retry-After": "30"}, mimetype="application/json")
    elif request.path == "/boom":
        response = Response(json.dumps({"error": {"code": "internal_error", "message": "x"}}), 500,
                            mimetype="application/json")
    else:
        response = Response(json.dumps({"key": request.headers.get("x-api-key")}), mimetype="application/json")
    return response(environ, start_response)


@pytest.fixture(scope="module")
def stand_in() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, _app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def generator(url: str, calls: list[workload.Call], **bounds) -> workload.LoadGenerator:
    bounds = {"concurrency": 3, "duration_s": 30.0, "max_requests": 40, "timeout_s": 5.0, **bounds}
    return workload.LoadGenerator(url, calls, workload.Context(api_key="secret", wav=b""), **bounds)


def test_the_request_cap_is_exact(stand_in):
    results = generator(stand_in, [workload.Call("ok", "GET", "/ok", 1)], max_requests=25).run()
    assert len(results) == 25 and {r.status for r in results} == {200}


def test_every_call_is_sent_once_before_the_weighted_draw(stand_in):
    calls = [workload.Call("common", "GET", "/ok", 1000), workload.Call("rare", "GET", "/ok", 0.001),
             workload.Call("rarer", "GET", "/ok", 0.0001)]
    results = generator(stand_in, calls, max_requests=3).run()
    assert sorted(r.call for r in results) == ["common", "rare", "rarer"]


def test_the_duration_bounds_the_run(stand_in):
    started = time.monotonic()
    results = generator(stand_in, [workload.Call("ok", "GET", "/ok", 1)], duration_s=0.5, max_requests=10**6).run()
    assert time.monotonic() - started < 2.0 and 0 < len(results) < 10**6
    assert max(r.started_s for r in results) - min(r.started_s for r in results) <= 0.5 + 0.1


def test_outcomes_are_classified(stand_in):
    calls = [workload.Call("ok", "GET", "/ok", 1), workload.Call("refuse", "POST", "/refuse", 1),
             workload.Call("boom", "POST", "/boom", 1)]
    results = generator(stand_in, calls, max_requests=60).run()
    seen = {(r.call, r.status, r.error_code) for r in results}
    assert seen == {("ok", 200, None), ("refuse", 503, "memory_budget_exceeded"), ("boom", 500, "internal_error")}
    assert all(r.seconds > 0 for r in results)


def test_the_admin_key_is_sent_unless_a_call_sets_its_own(stand_in):
    own = workload.Call("own", "GET", "/ok/own", 1, lambda ctx, rng: {"headers": {"x-api-key": "wrong"}})
    KEYS_SEEN.clear()
    generator(stand_in, [workload.Call("ok", "GET", "/ok/default", 1), own], max_requests=20, concurrency=1).run()
    assert set(KEYS_SEEN) == {("/ok/default", "secret"), ("/ok/own", "wrong")}


def test_no_server_is_status_zero_with_the_exception_name():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = generator(f"http://127.0.0.1:{port}", [workload.Call("ok", "GET", "/ok", 1)], max_requests=3).run()
    assert [(r.status, r.error_code) for r in results] == [(0, "ConnectionError")] * 3
