"""What both TTS backends share: validation, voice names and mixing, offline G2P, text splitting."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from backend.errors import BadRequest, ModelUnavailable, UnsupportedFormat, VoiceNotFound
from backend.pipelines.tts import common
from backend.pipelines.tts.common import (MAX_TOKENS, Phonemizer, VoiceBank, count_tokens, mix_packs, parse_voice,
                                          plan_pieces, validate_request)
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def vocab() -> dict[str, int]:
    from scripts.checkpoints.kokoro import kokoro_config
    return kokoro_config("tiny")["vocab"]


@pytest.fixture(scope="module")
def english(make_settings_module) -> Phonemizer:
    return Phonemizer(make_settings_module())


@pytest.fixture(scope="module")
def make_settings_module():
    from config import build_settings
    return lambda **kw: build_settings(**{"prometheus_multiproc_dir": None, **kw})


# --- request validation -------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"text": ""}, BadRequest, "empty"),
    ({"text": " \n\t "}, BadRequest, "whitespace"),
    ({"text": 42}, BadRequest, "string"),
    ({"text": "x" * 101}, BadRequest, "limit is 100"),
    ({"text": "hi", "speed": 0.2}, BadRequest, "0.25..4.0"),
    ({"text": "hi", "speed": 4.5}, BadRequest, "0.25..4.0"),
    ({"text": "hi", "speed": "fast"}, BadRequest, "number"),
    ({"text": "hi", "speed": True}, BadRequest, "number"),
    ({"text": "hi", "speed": float("nan")}, BadRequest, "number"),
    ({"text": "hi", "fmt": "aac"}, UnsupportedFormat, "libsndfile has no AAC encoder"),
    ({"text": "hi", "fmt": "ogg"}, UnsupportedFormat, "mp3, opus, flac, wav, pcm"),
    ({"text": "hi", "voice": "../../etc/passwd"}, VoiceNotFound, "invalid voice name"),
    ({"text": "hi", "voice": "af_heart/../x"}, VoiceNotFound, "invalid voice name"),
    ({"text": "hi", "voice": ""}, BadRequest, "non-empty"),
    ({"text": "hi", "lang": "klingon"}, BadRequest, "unknown"),
    ({"text": "hi", "lang": "ja"}, BadRequest, "misaki[ja]"),
])
def test_bad_requests_are_refused_with_a_reason(make_settings_module, kwargs, error, fragment) -> None:
    with pytest.raises(error) as caught:
        validate_request(make_settings_module(max_text_chars=100), **kwargs)
    assert fragment in caught.value.message
    assert 400 <= caught.value.status < 500


def test_a_good_request_is_normalised(make_settings_module) -> None:
    request = validate_request(make_settings_module(), text="Hi.", voice="af_bella(2)+af_sky", speed=4,
                               fmt="MP3", lang="en-GB")
    assert (request.speed, request.format, request.lang) == (4.0, "mp3", "b")


# --- voices -----------------------------------------------------------------------------------------
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
    label, style = bank.resolve("jf_alpha(1)+jm_kumo(3)", "af_heart")
    assert label == "jf_alpha(1)+jm_kumo(3)" and np.allclose(style, 0.75)
    with pytest.raises(VoiceNotFound) as caught:
        bank.resolve("af_nope", "af_heart")
    assert "jf_alpha, jm_kumo" in caught.value.message
    assert reads.count("jm_kumo") == 1  # cached after the first read


# --- G2P -------------------------------------------------------------------------------------------------
def test_espeak_g2p_is_offline_and_light() -> None:
    """No torch, no spaCy, and no socket opened while phonemising."""
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise OSError('network disabled in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from config import build_settings\n"
        "from backend.pipelines.tts.common import Phonemizer\n"
        "p = Phonemizer(build_settings(prometheus_multiproc_dir=None))\n"
        "out = {'en': p('Hello world.', 'a'), 'gb': p('Tomato.', 'b'), 'es': p('Hola.', 'e')}\n"
        "out['modules'] = [m for m in ('torch', 'spacy', 'transformers', 'kokoro') if m in sys.modules]\n"
        "print(__import__('json').dumps(out))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["modules"] == []
    assert out["en"].startswith("həlˈO") and out["en"].endswith(".")
    assert "ɑː" in out["gb"] or "ɑ" in out["gb"]
    assert "ˈola" in out["es"]


def test_misaki_g2p_without_spacy_model_is_a_clear_503(make_settings_module, monkeypatch) -> None:
    monkeypatch.setattr(common.importlib.util, "find_spec",
                        lambda name, *a: None if name == "en_core_web_sm" else __import__("importlib").util.find_spec(name))
    phonemizer = Phonemizer(make_settings_module(kokoro_g2p="misaki"))
    with pytest.raises(ModelUnavailable) as caught:
        phonemizer.prepare("a")
    assert caught.value.status == 503
    assert "en_core_web_sm" in caught.value.message and "KOKORO_G2P=espeak" in caught.value.message


# --- splitting ------------------------------------------------------------------------------------------
LONG_TEXT = " ".join(
    f"Sentence number {i} talks about the weather, the sea and the mountains; it goes on for a while." for i in range(40))


def test_long_text_is_split_under_the_token_limit(english, vocab) -> None:
    pieces = plan_pieces(LONG_TEXT, english, vocab)
    assert len(pieces) > 3
    assert all(0 < count_tokens(p, vocab) <= MAX_TOKENS for p in pieces)
    assert pieces[0] == english("Sentence number 0 talks about the weather, the sea and the mountains; it goes on for "
                                "a while.")  # the first sentence alone: first audio comes early
    # Nothing lost: every sentence's phonemes are in the pieces, in order.
    joined = " ".join(pieces)
    assert count_tokens(joined, vocab) >= sum(count_tokens(english(s), vocab) for s in LONG_TEXT.split(". ")) - 40


def test_a_smaller_piece_limit_is_honoured(english, vocab) -> None:
    """TTS_PIECE_TOKENS: activation memory grows with the piece, so the server may cap it lower."""
    pieces = plan_pieces(LONG_TEXT, english, vocab, limit=60)
    assert all(0 < count_tokens(p, vocab) <= 60 for p in pieces)
    assert len(pieces) > len(plan_pieces(LONG_TEXT, english, vocab))


def test_a_sentence_without_punctuation_is_cut_at_words(english, vocab) -> None:
    text = " ".join(["banana"] * 150)  # one 'sentence' of ~900 phoneme tokens
    pieces = plan_pieces(text, english, vocab)
    assert len(pieces) >= 2
    assert all(count_tokens(p, vocab) <= MAX_TOKENS for p in pieces)
    word = english("banana")
    assert all(p == " ".join([word] * (p.count(" ") + 1)) for p in pieces)  # whole words only


def test_a_giant_word_is_cut_anywhere(vocab) -> None:
    pieces = plan_pieces("x", lambda _: "a" * 1200, vocab)
    assert [count_tokens(p, vocab) for p in pieces] == [510, 510, 180]
