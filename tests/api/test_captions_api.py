"""Speech with word timestamps over HTTP: /dev/captioned_speech (Kokoro-FastAPI's shape) and /api/tts captions."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import soundfile

from backend import create_app
from backend.api.captions import render_cues
from backend.pipelines.tts.pipeline import SpokenWord
from backend.registry import get_registry
from config import build_settings

TEXT = "The kettle is on, come and sit down. [pause:0.5s] We will talk about the weather and the sea."
WORDS = ["The", "kettle", "is", "on", "come", "and", "sit", "down", "We", "will", "talk", "about", "the", "weather",
         "and", "the", "sea"]


@pytest.fixture(scope="module")
def app(kokoro_checkpoint, tmp_path_factory):
    app = create_app(build_settings(backend="torch", kokoro_model_dir=kokoro_checkpoint, memory_budget_mb=16384,
                                    model_ttl_s=-1, state_dir=tmp_path_factory.mktemp("state"), inference_threads=1,
                                    prometheus_multiproc_dir=None, max_text_chars=2000, rate_limit="",
                                    tts_first_piece_tokens=8))
    app.config["TESTING"] = True
    yield app
    get_registry(app).shutdown()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def captioned(client, **body):
    response = client.post("/dev/captioned_speech", json={"voice": "af_heart", "response_format": "wav", **body})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    audio, rate = soundfile.read(io.BytesIO(base64.b64decode(answer["audio"])), dtype="float32")
    return answer, audio, rate


def check_times(timestamps: list[dict], seconds: float) -> None:
    starts = [t["start_time"] for t in timestamps]
    assert starts == sorted(starts)
    for t in timestamps:
        assert 0 <= t["start_time"] <= t["end_time"] <= seconds + 1e-3


def test_captioned_speech_has_kokoro_fastapis_shape_and_times_inside_the_audio(client) -> None:
    answer, audio, rate = captioned(client, input=TEXT)
    assert set(answer) == {"audio", "audio_format", "timestamps"} and answer["audio_format"] == "wav"
    assert all(set(t) == {"word", "start_time", "end_time"} for t in answer["timestamps"])
    assert [t["word"] for t in answer["timestamps"]] == WORDS  # the words follow the text
    check_times(answer["timestamps"], len(audio) / rate)
    # The explicit pause lies between "down" and "We".
    down, we = answer["timestamps"][7], answer["timestamps"][8]
    assert we["start_time"] - down["end_time"] >= 0.5


def test_times_follow_speed_and_pauses(client) -> None:
    slow, _, _ = captioned(client, input="Come and sit down.", speed=0.5)
    fast, _, _ = captioned(client, input="Come and sit down.", speed=2.0)
    assert slow["timestamps"][-1]["end_time"] > fast["timestamps"][-1]["end_time"]
    plain, _, _ = captioned(client, input="Come here. Sit down.")
    paused, _, _ = captioned(client, input="Come here. [pause:2s] Sit down.")
    assert paused["timestamps"][2]["start_time"] - plain["timestamps"][2]["start_time"] >= 1.5


def test_the_same_pieces_with_or_without_captions(client) -> None:
    answer, audio, _ = captioned(client, input="Come and sit down.")
    plain = client.post("/v1/audio/speech", json={"input": "Come and sit down.", "voice": "af_heart",
                                                   "response_format": "wav", "stream": False})  # planned alike: whole
    same, _ = soundfile.read(io.BytesIO(plain.data), dtype="float32")
    plain.close()  # a streamed answer holds the model until it is closed
    # Kokoro's torch source adds random noise: the lengths (pieces, trims, joins) match, the samples need not.
    # The ONNX graph's audio is compared bit for bit in tests/unit/test_tts_timed_graph.py.
    assert len(audio) == len(same) and np.abs(audio).max() > 0


def test_api_tts_captions_json(client) -> None:
    response = client.post("/api/tts", json={"text": "Come and sit down.", "captions": "json", "format": "mp3"})
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"audio", "audio_format", "sample_rate", "voice", "captions_format", "captions"}
    assert body["audio_format"] == "mp3" and body["captions_format"] == "json" and body["sample_rate"] == 24000
    assert [w["word"] for w in body["captions"]] == ["Come", "and", "sit", "down"]
    assert base64.b64decode(body["audio"])[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3") or \
        base64.b64decode(body["audio"])[0] == 0xFF


@pytest.mark.parametrize("fmt", ["json", "srt", "vtt"])
def test_api_tts_captions_answer_is_the_documented_json(app, client, fmt) -> None:
    """The document says /api/tts answers audio, or CaptionedTts JSON when captions are asked for (the fuzzer's
    content-type check found the JSON undocumented); every format's answer fits that model."""
    from backend.api.captions import CaptionedTts

    answer = app.test_client().get("/openapi.json").get_json()["paths"]["/api/tts"]["post"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CaptionedTts"}
    assert "audio/wav" in answer["content"]
    response = client.post("/api/tts", json={"text": "Come and sit down.", "captions": fmt, "format": "pcm"})
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert CaptionedTts.model_validate(response.get_json()).captions_format == fmt


SRT_CUE = re.compile(r"^(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+)$")
VTT_CUE = re.compile(r"^(\d\d:\d\d:\d\d\.\d\d\d) --> (\d\d:\d\d:\d\d\.\d\d\d)\n(.+)$")


def clock(text: str) -> float:
    h, m, s = text.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_api_tts_captions_srt_and_vtt_are_valid(client, fmt) -> None:
    response = client.post("/api/tts", json={"text": TEXT, "captions": fmt})
    assert response.status_code == 200
    body = response.get_json()
    text = body["captions"]
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n")
        text = text[len("WEBVTT\n\n"):]
    blocks = text.strip("\n").split("\n\n")
    said, previous_end = [], 0.0
    for number, block in enumerate(blocks, start=1):
        match = (SRT_CUE if fmt == "srt" else VTT_CUE).match(block)
        assert match, block
        groups = match.groups()
        if fmt == "srt":
            assert int(groups[0]) == number
            groups = groups[1:]
        start, end = clock(groups[0]), clock(groups[1])
        assert previous_end <= start <= end
        previous_end = end
        said += groups[2].split()
    assert said == WORDS


def test_cues_break_at_long_silences_and_length() -> None:
    words = [SpokenWord("one", 0.0, 0.3), SpokenWord("two", 0.35, 0.6), SpokenWord("three", 1.5, 1.9)]
    assert render_cues(words, "srt") == "1\n00:00:00,000 --> 00:00:00,600\none two\n\n2\n00:00:01,500 --> " \
                                        "00:00:01,900\nthree\n"


def test_captions_are_refused_in_an_unknown_format(client) -> None:
    response = client.post("/api/tts", json={"text": "Hello.", "captions": "ass"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_request"
