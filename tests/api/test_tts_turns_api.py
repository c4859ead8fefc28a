"""A short request is served while a long one streams: TTS admits TTS_ADMITTED requests, which take turns by piece."""
from __future__ import annotations

import pytest

from backend import create_app
from backend.registry import get_registry
from config import build_settings

LONG = " [pause:0.1s] ".join(f"Sentence number {n} goes on for a while." for n in range(1, 5))


def make(kokoro_checkpoint, tmp_path_factory, admitted: int):
    # QUEUE_TIMEOUT_S=0: a request that would have to wait to be admitted is refused at once (no timing).
    app = create_app(build_settings(backend="torch", kokoro_model_dir=kokoro_checkpoint, memory_budget_mb=16384,
                                    model_ttl_s=-1, state_dir=tmp_path_factory.mktemp("state"), inference_threads=1,
                                    prometheus_multiproc_dir=None, rate_limit="", queue_timeout_s=0,
                                    tts_admitted=admitted))
    app.config["TESTING"] = True
    return app


@pytest.mark.parametrize("admitted", [0, 2])
def test_a_short_request_is_served_while_a_long_one_streams(kokoro_checkpoint, tmp_path_factory, admitted) -> None:
    app = make(kokoro_checkpoint, tmp_path_factory, admitted)
    client = app.test_client()
    try:
        long = client.post("/api/tts", json={"text": LONG, "format": "pcm"}, buffered=False)
        assert long.status_code == 200
        chunks = iter(long.response)
        first = next(chunks)  # the long request has synthesised its first piece and holds its place
        short = client.post("/api/tts", json={"text": "Hi.", "format": "wav"})
        if admitted:
            assert short.status_code == 200 and short.data[:4] == b"RIFF"
        else:  # one request at a time from first piece to last: the short one cannot get in
            assert short.status_code == 503 and short.get_json()["error"]["code"] == "model_busy"
        rest = b"".join(chunks)  # the long one finishes its stream, unharmed
        assert len(first) + len(rest) > 0 and len(rest) > len(first)
        long.close()
        third = client.post("/api/tts", json={"text": "Hi.", "format": "wav"})
        assert third.status_code == 200  # the long one's place was given back
    finally:
        get_registry(app).shutdown()
