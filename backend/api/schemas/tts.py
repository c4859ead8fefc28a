"""What a valid text-to-speech request is, in OpenAI's shape (/v1/audio/speech) and this service's (/api/tts).

Everything that can be checked without the model is checked here, once: fields, text (and that it
has something to say), speed, format (backend.audio.encode.check_format), voice syntax
(backend.pipelines.tts.voices.parse_voice), language, and, given the voice names on disk, that the
voice is installed: OpenAI's names map through VOICE_ALIASES (to the default voice when the mapped
one is not installed). A bad request is refused before the registry is asked for anything. OpenAI's
`instructions` is accepted and ignored (Kokoro has no style prompt). `normalize` and `input_type`
(and `lang` on /v1/audio/speech) extend OpenAI's body, as Kokoro-FastAPI's normalization options do;
inline controls in the text (`[pause:0.5s]`, `[word](/phonemes/)`) are checked by the pipeline's
preprocess, which needs the model's phoneme vocabulary.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Any

import numpy as np

from backend.audio.encode import check_format
from backend.errors import BadRequest
from backend.pipelines.tts.g2p import language_code
from backend.pipelines.tts.pipeline import INPUT_TYPES, SpeechRequest
from backend.pipelines.tts.voices import installed_mix, parse_voice, pick_default
from config import Settings

SPEED_MIN, SPEED_MAX = 0.25, 4.0
OPENAI_FIELDS = frozenset({"model", "input", "voice", "response_format", "speed", "instructions", "stream_format",
                           "lang", "normalize", "input_type"})
API_FIELDS = frozenset({"text", "voice", "speed", "format", "lang", "normalize", "input_type"})


def openai_speech_request(body: dict[str, Any], settings: Settings) -> SpeechRequest:
    """OpenAI's `audio.speech.create` body: {model, input, voice, response_format, speed, instructions}."""
    _check_keys(body, OPENAI_FIELDS)
    if "input" not in body:
        raise BadRequest("missing field 'input' (the text to speak)", field="input")
    if not isinstance(body.get("model", ""), str):
        raise BadRequest("model must be a string", field="model")
    if not isinstance(body.get("instructions", ""), str):
        raise BadRequest("instructions must be a string (it is accepted and ignored)", field="instructions")
    if body.get("stream_format", "audio") != "audio":
        raise BadRequest("only stream_format 'audio' is served (long text is streamed as chunked audio); "
                         "'sse' is not", field="stream_format")
    return validate_request(settings, text=body["input"], voice=body.get("voice"), speed=body.get("speed", 1.0),
                            fmt=body.get("response_format", "mp3"), lang=body.get("lang"),
                            normalize=body.get("normalize", True), input_type=body.get("input_type", "text"))


def api_tts_request(body: dict[str, Any], settings: Settings) -> SpeechRequest:
    """This service's own body: {text, voice, speed, format, lang}; format defaults to wav."""
    _check_keys(body, API_FIELDS)
    if "text" not in body:
        raise BadRequest("missing field 'text'", field="text")
    return validate_request(settings, text=body["text"], voice=body.get("voice"), speed=body.get("speed", 1.0),
                            fmt=body.get("format", "wav"), lang=body.get("lang"),
                            normalize=body.get("normalize", True), input_type=body.get("input_type", "text"))


def validate_request(settings: Settings, *, text: Any, voice: Any = None, speed: Any = 1.0,
                     fmt: Any = "mp3", lang: Any = None, normalize: Any = True,
                     input_type: Any = "text") -> SpeechRequest:
    """Everything about a request that can be checked without the model's files; raises 4xx ApiErrors."""
    if not isinstance(text, str):
        raise BadRequest("text must be a string", field="input")
    if not text.strip():
        raise BadRequest("text is empty or only whitespace", field="input")
    if not any(ch.isalnum() for ch in text):
        raise BadRequest("the text has nothing to speak (no letters or digits)", field="input")
    if len(text) > settings.max_text_chars:
        raise BadRequest(f"text is {len(text)} characters; the limit is {settings.max_text_chars} (MAX_TEXT_CHARS)",
                         field="input", max_chars=settings.max_text_chars)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not np.isfinite(speed):
        raise BadRequest(f"speed must be a number between {SPEED_MIN} and {SPEED_MAX}", field="speed")
    if not SPEED_MIN <= float(speed) <= SPEED_MAX:
        raise BadRequest(f"speed {speed} is outside {SPEED_MIN}..{SPEED_MAX}", field="speed")
    if not isinstance(fmt, str):
        raise BadRequest("format must be a string", field="response_format")
    fmt = check_format(fmt)
    if voice is not None and (not isinstance(voice, str) or not voice.strip()):
        raise BadRequest("voice must be a non-empty string", field="voice")
    mix = parse_voice(voice) if voice is not None else None  # syntax and names; installed_voice() says if it exists
    lang_code = None
    if lang is not None:
        if not isinstance(lang, str):
            raise BadRequest("lang must be a string", field="lang")
        lang_code = language_code(lang)
    if not isinstance(normalize, bool):
        raise BadRequest("normalize must be true or false", field="normalize")
    if input_type not in INPUT_TYPES:
        raise BadRequest(f"input_type must be one of: {', '.join(INPUT_TYPES)}", field="input_type")
    return SpeechRequest(text=text, voice=mix, speed=float(speed), format=fmt, lang=lang_code, normalize=normalize,
                         input_type=input_type)


def installed_voice(request: SpeechRequest, settings: Settings, installed: Collection[str]) -> SpeechRequest:
    """The request with its voice in installed voices (`installed`: the names on disk); 400 for unknown ones."""
    default = pick_default(installed, settings.default_voice)
    return replace(request, voice=installed_mix(request.voice, installed, settings.voice_aliases, default))


def _check_keys(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}")
