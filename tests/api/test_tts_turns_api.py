"""TTS admits TTS_ADMITTED requests, which take turns by piece: a short request is served while long ones
stream, a 4th concurrent client is admitted and a 5th queued, none refused, at a tenth of a CPU.

The CPU quota is faked (0.1 CPU: QUEUE_TIMEOUT_S unset sizes the wait to 182 s); no test here waits on the
clock: open streams hold their places, and a queued request is observed through the registry's count.
"""
from __future__ import annotations

import threading

import pytest

from backend import create_app, cpu_quota
from backend.registry import get_registry
from config import build_settings

LONG = " [pause:0.1s] ".join(f"Sentence number {n} goes on for a while." for n in range(1, 5))
TWO_PIECES = "Sentence number one. [pause:0.1s] Sentence number two."


def make(kokoro_checkpoint, tmp_path_factory, **overrides):
    app = create_app(build_settings(backend="torch", kokoro_model_dir=kokoro_checkpoint, memory_budget_mb=16384,
                                    model_ttl_s=-1, state_dir=tmp_path_factory.mktemp("state"), inference_threads=1,
                                    prometheus_multiproc_dir=None, rate_limit="", **overrides))
    app.config["TESTING"] = True
    return app


@pytest.fixture(scope="module")
def defaults_app(kokoro_checkpoint, tmp_path_factory):
    """The default TTS_ADMITTED, MAX_QUEUE and QUEUE_TIMEOUT_S (unset) on Render's free plan's CPU."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu_quota, "cpu_quota", lambda: cpu_quota.CpuQuota(0.1, 2, "test: Render's free plan"))
        app = make(kokoro_checkpoint, tmp_path_factory)
        yield app
        get_registry(app).shutdown()


def short_while_long_streams(app, served: bool) -> None:
    client = app.test_client()
    long = client.post("/api/tts", json={"text": LONG, "format": "pcm"}, buffered=False)
    assert long.status_code == 200
    chunks = iter(long.response)
    first = next(chunks)  # the long request has synthesised its first piece and holds its place
    short = client.post("/api/tts", json={"text": "Hi.", "format": "wav"})
    if served:
        assert short.status_code == 200 and short.data[:4] == b"RIFF"
    else:  # one request at a time from first piece to last: the short one cannot get in
        assert short.status_code == 503 and short.get_json()["error"]["code"] == "model_busy"
    rest = b"".join(chunks)  # the long one finishes its stream, unharmed
    assert len(first) + len(rest) > 0 and len(rest) > len(first)
    long.close()
    third = client.post("/api/tts", json={"text": "Hi.", "format": "wav"})
    assert third.status_code == 200  # the long one's place was given back


def test_a_short_request_is_served_while_a_long_one_streams(defaults_app) -> None:
    short_while_long_streams(defaults_app, served=True)


def test_one_request_at_a_time_refuses_a_short_one_while_a_long_one_streams(kokoro_checkpoint,
                                                                           tmp_path_factory) -> None:
    # TTS_ADMITTED=0: the old rule; QUEUE_TIMEOUT_S=0: a request that would have to wait is refused at once.
    app = make(kokoro_checkpoint, tmp_path_factory, queue_timeout_s=0, tts_admitted=0)
    try:
        short_while_long_streams(app, served=False)
    finally:
        get_registry(app).shutdown()


def test_a_fourth_client_is_admitted_and_a_fifth_queued_not_refused(defaults_app) -> None:
    app = defaults_app
    registry, client = get_registry(app), app.test_client()
    assert registry.queue_timeout_s == 182 and app.config["SETTINGS"].tts_admitted == 4
    operator = client.get("/api/operator").get_json()["cpu"]
    assert (operator["queue_timeout_s"], operator["max_queue"], operator["tts_admitted"]) == (182, 3, 4)
    streams = []
    for _ in range(4):  # three long texts streaming and a fourth client: each admitted, holding its place
        stream = client.post("/api/tts", json={"text": TWO_PIECES, "format": "pcm"}, buffered=False)
        assert stream.status_code == 200
        next(iter(stream.response))
        streams.append(stream)

    fifth: dict = {}
    thread = threading.Thread(target=lambda: fifth.update(response=app.test_client().post(
        "/api/tts", json={"text": "Hi.", "format": "wav"})), daemon=True)
    thread.start()
    for _ in range(6000):  # queued: waiting to be admitted (observed, not timed; the bound only ends a failure)
        if registry.slots.waiting("tts") == 1:
            break
        thread.join(0.01)
    assert registry.slots.waiting("tts") == 1 and thread.is_alive()
    streams[0].close()  # a client goes away: its place goes to the one queued
    thread.join(120)
    assert fifth["response"].status_code == 200 and fifth["response"].data[:4] == b"RIFF"
    for stream in streams[1:]:
        stream.close()
    assert registry.slots.waiting("tts") == 0
