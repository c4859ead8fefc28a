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

The pydantic models (ApiTtsBody, OpenAISpeechBody) are the shapes, validated by the blueprint and
published in /openapi.json; `validate_request` then checks what they cannot say alone (settings'
limits, formats this build encodes, voice syntax and weights, languages).
"""
from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import replace
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from backend.api.schemas.common import validate
from backend.audio.encode import check_format
from backend.errors import ValidationFailed
from backend.pipelines.tts.g2p import language_code
from backend.pipelines.tts.pipeline import INPUT_TYPES, SpeechRequest
from backend.pipelines.tts.voices import installed_mix, parse_voice, pick_default
from config import Settings

SPEED_MIN, SPEED_MAX = 0.25, 4.0


MAX_VOICE_WEIGHT = 1000.0
TEXT_HELP = ("The text to speak, at most MAX_TEXT_CHARS characters (numbers, money, dates... are read as words "
             "unless `normalize` is false). Inline controls: `[pause:0.5s]` (or `500ms`, up to 10 s) is silence of "
             "that length; `[Kokoro](/kˈOkəɹO/)` says the phonemes between the slashes for that word (Kokoro's own "
             "G2P syntax). With `input_type: \"phonemes\"` the whole text is Kokoro phonemes (your own G2P); "
             "phonemes the model does not know are a 400 naming them.")
VOICE_HELP = ("A voice (`af_heart`), an OpenAI name mapped by VOICE_ALIASES (`alloy`), or a mix "
              "`af_bella(2)+af_sky(1)` of at most 8 voices with positive weights; GET /v1/audio/voices lists them.")
FORMAT_NAMES = ("mp3", "opus", "aac", "flac", "wav", "pcm")
Speed = Annotated[float, Field(strict=True, ge=SPEED_MIN, le=SPEED_MAX, allow_inf_nan=False,
                               description="speaking rate, 0.25..4.0")]


class SpeechOptions(BaseModel):
    """What both speech bodies share."""

    model_config = ConfigDict(extra="forbid")

    voice: str | None = Field(None, min_length=1, max_length=512, description=VOICE_HELP)
    speed: Speed = 1.0
    lang: str | None = Field(None, min_length=1, max_length=16,
                             description="language of the text (`en-us`, `en-gb`, `es`, `fr`, `hi`, `it`, `pt-br`); "
                                         "default: the voice's")
    normalize: StrictBool = Field(True, description="read numbers, money, dates, units... as words")
    input_type: Literal[INPUT_TYPES] = Field("text", description="`text`, or `phonemes` (Kokoro phonemes)")


class ApiTtsBody(SpeechOptions):
    """This service's own speech body."""

    text: str = Field(description=TEXT_HELP)
    format: str = Field("wav", max_length=16, json_schema_extra={"enum": list(FORMAT_NAMES)},
                        description="audio format (aac needs PyAV)")
    captions: Literal["json", "srt", "vtt"] | None = Field(
        None, description="also each word's start and end: the answer is then JSON with the audio in base64 and the "
                          "captions as a word list (`json`) or SRT/WebVTT text (backend.api.captions)")


class OpenAISpeechBody(SpeechOptions):
    """OpenAI's `audio.speech.create` body, with this service's `lang`, `normalize` and `input_type`."""

    model: str = Field("tts-1", max_length=128, description="accepted and ignored (there is one TTS model)")
    input: str = Field(description=TEXT_HELP)
    response_format: str = Field("mp3", max_length=16, json_schema_extra={"enum": list(FORMAT_NAMES)},
                                 description="audio format (aac needs PyAV)")
    instructions: str | None = Field(None, max_length=4096, description="accepted and ignored (Kokoro has no style "
                                                                        "prompt)")
    stream_format: Literal["audio"] = Field("audio", description="long text is streamed as chunked audio; "
                                                                 "`sse` is not served")
    # What Kokoro-FastAPI's clients send as well.
    stream: StrictBool = Field(True, description="true: text of several pieces is streamed as chunked audio (the "
                                                 "first audio leaves after the first piece); false: the whole file at "
                                                 "once, with its exact length")
    lang_code: str | None = Field(None, min_length=1, max_length=16,
                                  description="Kokoro-FastAPI's name for `lang`: `a`, `b`, `e`, ... or `en-us`, ...")
    return_download_link: StrictBool = Field(False, description="Kokoro-FastAPI's download link: only false is "
                                                                "served (the audio is the response body)")


def openai_speech_request(body: OpenAISpeechBody | dict[str, Any], settings: Settings) -> SpeechRequest:
    """OpenAI's `audio.speech.create` body: {model, input, voice, response_format, speed, instructions}."""
    if not isinstance(body, OpenAISpeechBody):
        body = validate(OpenAISpeechBody, body, where="body")
    if body.return_download_link:
        raise ValidationFailed("return_download_link is not served: the audio is the response body; send false",
                               field="return_download_link")
    if body.lang is not None and body.lang_code is not None and language_code(body.lang) != language_code(body.lang_code):
        raise ValidationFailed(f"lang {body.lang!r} and lang_code {body.lang_code!r} name different languages; "
                               "send one", field="lang_code")
    return validate_request(settings, text=body.input, voice=body.voice, speed=body.speed, fmt=body.response_format,
                            lang=body.lang if body.lang is not None else body.lang_code, normalize=body.normalize,
                            input_type=body.input_type)


def api_tts_request(body: ApiTtsBody | dict[str, Any], settings: Settings) -> SpeechRequest:
    """This service's own body: {text, voice, speed, format, lang}; format defaults to wav."""
    if not isinstance(body, ApiTtsBody):
        body = validate(ApiTtsBody, body, where="body")
    return validate_request(settings, text=body.text, voice=body.voice, speed=body.speed, fmt=body.format,
                            lang=body.lang, normalize=body.normalize, input_type=body.input_type)


def validate_request(settings: Settings, *, text: Any, voice: Any = None, speed: Any = 1.0,
                     fmt: Any = "mp3", lang: Any = None, normalize: Any = True,
                     input_type: Any = "text") -> SpeechRequest:
    """Everything about a request that can be checked without the model's files; raises 4xx ApiErrors."""
    if not isinstance(text, str):
        raise ValidationFailed("text must be a string", field="input")
    if not text.strip():
        raise ValidationFailed("text is empty or only whitespace", field="input")
    if not any(ch.isalnum() for ch in text):
        raise ValidationFailed("the text has nothing to speak (no letters or digits)", field="input")
    if len(text) > settings.max_text_chars:
        raise ValidationFailed(f"text is {len(text)} characters; the limit is {settings.max_text_chars} (MAX_TEXT_CHARS)",
                         field="input", max_chars=settings.max_text_chars)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not np.isfinite(speed):
        raise ValidationFailed(f"speed must be a number between {SPEED_MIN} and {SPEED_MAX}", field="speed")
    if not SPEED_MIN <= float(speed) <= SPEED_MAX:
        raise ValidationFailed(f"speed {speed} is outside {SPEED_MIN}..{SPEED_MAX}", field="speed")
    if not isinstance(fmt, str):
        raise ValidationFailed("format must be a string", field="response_format")
    fmt = check_format(fmt)
    if voice is not None and (not isinstance(voice, str) or not voice.strip()):
        raise ValidationFailed("voice must be a non-empty string", field="voice")
    mix = parse_voice(voice) if voice is not None else None  # syntax and names; installed_voice() says if it exists
    if mix is not None and not all(math.isfinite(weight) and weight <= MAX_VOICE_WEIGHT for _, weight in mix):
        # "af_heart(999...9)" parses to inf: the mix would be NaN, i.e. seconds of silence with a 200.
        raise ValidationFailed(f"voice weights must be at most {MAX_VOICE_WEIGHT:g}", field="voice")
    lang_code = None
    if lang is not None:
        if not isinstance(lang, str):
            raise ValidationFailed("lang must be a string", field="lang")
        lang_code = language_code(lang)
    if not isinstance(normalize, bool):
        raise ValidationFailed("normalize must be true or false", field="normalize")
    if input_type not in INPUT_TYPES:
        raise ValidationFailed(f"input_type must be one of: {', '.join(INPUT_TYPES)}", field="input_type")
    return SpeechRequest(text=text, voice=mix, speed=float(speed), format=fmt, lang=lang_code, normalize=normalize,
                         input_type=input_type)


def installed_voice(request: SpeechRequest, settings: Settings, installed: Collection[str]) -> SpeechRequest:
    """The request with its voice in installed voices (`installed`: the names on disk); 400 for unknown ones."""
    default = pick_default(installed, settings.default_voice)
    return replace(request, voice=installed_mix(request.voice, installed, settings.voice_aliases, default))
