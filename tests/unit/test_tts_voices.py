"""backend.pipelines.tts.voices: mix syntax, weighted packs, and the bank that resolves a request's voice."""
from __future__ import annotations

import numpy as np
import pytest

from backend.errors import BadRequest, VoiceNotFound
from backend.pipelines.tts.voices import VoiceBank, mix_packs, parse_voice


def test_voice_mix_syntax() -> None:
    assert parse_voice("af_bella(2)+af_sky(1)") == [("af_bella", 2.0), ("af_sky", 1.0)]
    assert parse_voice("af_bella,af_sky") == [("af_bella", 1.0), ("af_sky", 1.0)]
    assert parse_voice(" AF_Heart ( 0.5 ) ") == [("af_heart", 0.5)]
    with pytest.raises(BadRequest, match="positive"):
        parse_voice("af_bella(0)")
    with pytest.raises(VoiceNotFound):
        parse_voice("af_bella(2")
    with pytest.raises(BadRequest, match="at most"):
        parse_voice("+".join(["af_a"] * 9))


def test_mix_is_the_weighted_average() -> None:
    a, b = np.full((510, 1, 256), 1.0, np.float32), np.full((510, 1, 256), 4.0, np.float32)
    assert np.allclose(mix_packs([a, b], [2.0, 1.0]), 2.0)


def test_voice_bank_resolves_defaults_mixes_and_unknowns() -> None:
    reads: list[str] = []
    packs = {"jf_alpha": np.zeros((510, 1, 256), np.float32), "jm_kumo": np.ones((510, 1, 256), np.float32)}
    bank = VoiceBank(list(packs), lambda name: reads.append(name) or packs[name])
    assert bank.resolve(None, "af_heart")[0] == "jf_alpha"  # default absent: first available
    assert bank.resolve(None, "jm_kumo")[0] == "jm_kumo"
    label, style = bank.resolve(parse_voice("jf_alpha(1)+jm_kumo(3)"), "af_heart")
    assert label == "jf_alpha(1)+jm_kumo(3)" and np.allclose(style, 0.75)
    with pytest.raises(VoiceNotFound) as caught:
        bank.resolve(parse_voice("af_nope"), "af_heart")
    assert "jf_alpha, jm_kumo" in caught.value.message
    assert reads.count("jm_kumo") == 1  # cached after the first read
