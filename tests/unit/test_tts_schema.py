"""backend.api.schemas.tts: every request check that needs no model, with the reason it gives."""
from __future__ import annotations

import pytest

from backend.api.schemas.tts import validate_request
from backend.errors import BadRequest, UnsupportedFormat, VoiceNotFound
from backend.pipelines.tts.g2p import mandarin_g2p_missing


@pytest.fixture(scope="module")
def make_settings_module():
    from config import build_settings
    return lambda **kw: build_settings(**{"prometheus_multiproc_dir": None, **kw})


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
    ({"text": "hi", "fmt": "ogg"}, UnsupportedFormat, "mp3, opus, flac, wav, pcm, aac"),
    ({"text": "hi", "normalize": "yes"}, BadRequest, "true or false"),
    ({"text": "hi", "input_type": "ssml"}, BadRequest, "text, phonemes"),
    ({"text": "hi", "voice": "../../etc/passwd"}, VoiceNotFound, "invalid voice name"),
    ({"text": "hi", "voice": "af_heart/../x"}, VoiceNotFound, "invalid voice name"),
    ({"text": "hi", "voice": ""}, BadRequest, "non-empty"),
    ({"text": "hi", "lang": "klingon"}, BadRequest, "unknown"),
    pytest.param({"text": "hi", "lang": "zh"}, BadRequest, "needs misaki's Mandarin G2P",
                 marks=pytest.mark.skipif(mandarin_g2p_missing() is None, reason="misaki[zh] is installed here")),
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


def test_text_with_nothing_to_speak_is_refused_before_the_model(make_settings_module) -> None:
    with pytest.raises(BadRequest, match="nothing to speak"):
        validate_request(make_settings_module(), text="... !? --")
    assert validate_request(make_settings_module(), text="42!").text == "42!"  # digits are read out


def test_openai_instructions_are_accepted_and_ignored(make_settings_module) -> None:
    from backend.api.schemas.tts import openai_speech_request

    settings = make_settings_module()
    plain = openai_speech_request({"model": "tts-1", "input": "Hi.", "voice": "alloy"}, settings)
    instructed = openai_speech_request({"model": "tts-1", "input": "Hi.", "voice": "alloy",
                                        "instructions": "Speak cheerfully."}, settings)
    assert plain == instructed
    with pytest.raises(BadRequest, match="instructions"):
        openai_speech_request({"model": "tts-1", "input": "Hi.", "instructions": 3}, settings)


def test_voice_aliases_are_a_setting(make_settings_module) -> None:
    from backend.api.schemas.tts import installed_voice, openai_speech_request

    settings = make_settings_module(voice_aliases="alloy=jm_kumo, nova=af_nova")
    assert settings.voice_aliases == {"alloy": "jm_kumo", "nova": "af_nova"}
    request = openai_speech_request({"input": "Hi.", "voice": "alloy"}, settings)
    assert installed_voice(request, settings, ["jf_alpha", "jm_kumo"]).voice == [("jm_kumo", 1.0)]
    assert installed_voice(openai_speech_request({"input": "Hi.", "voice": "nova"}, settings), settings,
                           ["jf_alpha", "jm_kumo"]).voice == [("jf_alpha", 1.0)]
