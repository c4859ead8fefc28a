"""backend.pipelines.tts.voices: mix syntax, weighted packs, and the bank that resolves a request's voice."""
from __future__ import annotations

import numpy as np
import pytest

from backend.errors import BadRequest, VoiceNotFound
from backend.pipelines.tts.voices import VoiceBank, installed_mix, mix_packs, parse_voice, pick_default


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


JAPANESE = ["jf_alpha", "jf_gongitsune", "jm_kumo"]  # what the packaged model installs offline
ALIASES = {"alloy": "af_alloy", "nova": "af_nova"}


def test_the_default_voice_is_the_configured_one_if_installed_else_the_first() -> None:
    assert pick_default(["af_bella", "af_heart"], "af_heart") == "af_heart"
    assert pick_default(JAPANESE, "af_heart") == "jf_alpha"
    assert pick_default([], "af_heart") is None


def test_openai_names_map_to_kokoro_voices_or_to_the_default_when_not_installed() -> None:
    assert installed_mix([("alloy", 1.0)], ["af_alloy", "af_heart"], ALIASES, "af_heart") == [("af_alloy", 1.0)]
    assert installed_mix([("alloy", 1.0)], JAPANESE, ALIASES, "jf_alpha") == [("jf_alpha", 1.0)]
    assert installed_mix([("alloy", 2.0), ("jm_kumo", 1.0)], JAPANESE, ALIASES, "jf_alpha") == \
        [("jf_alpha", 2.0), ("jm_kumo", 1.0)]
    assert installed_mix(None, JAPANESE, ALIASES, "jf_alpha") is None  # no voice named: the pipeline's default


def test_an_unknown_voice_is_a_400_listing_the_installed_ones_and_the_aliases() -> None:
    with pytest.raises(VoiceNotFound) as caught:
        installed_mix([("af_heart", 1.0)], JAPANESE, ALIASES, "jf_alpha")
    error = caught.value
    assert error.status == 400 and error.details["available"] == JAPANESE
    assert error.details["aliases"] == ["alloy", "nova"] and "jf_alpha" in error.message
