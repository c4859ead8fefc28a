"""The official openai client against real Gunicorn serving a tiny random Kokoro, offline."""
from __future__ import annotations

import io

import requests
import soundfile


def test_openai_client_gets_playable_audio(live_server, kokoro_checkpoint) -> None:
    from openai import OpenAI

    server = live_server({"BACKEND": "torch", "KOKORO_MODEL_DIR": str(kokoro_checkpoint), "HF_HUB_OFFLINE": "1",
                          "MEMORY_BUDGET_MB": "16384", "TIMEOUT": "300",
                          "INFERENCE_THREADS": "1"})
    client = OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=300, max_retries=0)

    speech = client.audio.speech.create(model="tts-1", voice="af_heart", input="Hello from the live server.",
                                        response_format="wav")
    audio, rate = soundfile.read(io.BytesIO(speech.content), dtype="float32")
    assert rate == 24000 and len(audio) > 0.1 * rate and speech.content[:4] == b"RIFF"

    # Several pieces arrive as a chunked stream; the client reads it as it comes.
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="af_bella(1)+am_adam(1)", input="One. [pause:0.2s] Two words.", response_format="mp3") as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        chunks = list(response.iter_bytes())
    audio, rate = soundfile.read(io.BytesIO(b"".join(chunks)), dtype="float32")
    assert rate == 24000 and len(audio) > 0.05 * rate

    bad = requests.post(server.url + "/v1/audio/speech", json={"model": "tts-1", "input": "hi", "voice": "../x"},
                        timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "voice_not_found"
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
