"""What a valid voice-analysis request is: its options, base64 audio, and the /api/voice-detection body.

The audio itself is checked by backend.audio.decode (container, length, NaN) before the registry
is asked for a model, and so is the syntax of the options; the pipelines' preprocess checks what
needs the model (analysable audio, allowed_languages it knows).
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backend.errors import BadRequest
from backend.pipelines.language.detector import parse_allowed, parse_top_k

CONTRACT_FORMATS = ("mp3", "wav", "flac", "ogg", "opus")


@dataclass(frozen=True)
class VoiceDetectionRequest:
    """The /api/voice-detection body, its fields checked; the audio is decoded only once the model is enabled."""

    language: str
    audio_format: str
    audio_base64: Any


def voice_detection_request(body: Mapping[str, Any]) -> VoiceDetectionRequest:
    """{"language", "audioFormat", "audioBase64"}, each present and of the accepted kind."""
    language = body.get("language")
    if not isinstance(language, str) or not language.strip():
        raise BadRequest("'language' is required: the language spoken in the audio, e.g. \"English\"")
    audio_format = body.get("audioFormat")
    if not isinstance(audio_format, str) or audio_format.lower() not in CONTRACT_FORMATS:
        raise BadRequest(f"'audioFormat' must be one of {', '.join(CONTRACT_FORMATS)}, got {audio_format!r}")
    if "audioBase64" not in body:
        raise BadRequest("'audioBase64' is required: the audio file, base64-encoded")
    return VoiceDetectionRequest(language=language.strip(), audio_format=audio_format.lower(),
                                 audio_base64=body["audioBase64"])


def base64_audio(value: Any) -> bytes:
    """The bytes of a base64 string (a data: URL prefix is accepted); 400 for anything else."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("'audioBase64' must be a non-empty base64 string")
    text = value.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"'audioBase64' is not valid base64: {exc}") from exc


def analysis_options(query: Mapping[str, Any], form: Mapping[str, Any], body: Mapping[str, Any] | None) -> dict[str, Any]:
    """top_k and allowed_languages from the JSON body, else form fields, else the query string; 400 on bad syntax.

    Whether the model knows the languages is checked by the language pipeline.
    """
    source: dict[str, Any] = dict(query)
    source.update(form)
    if body is not None:
        source.update(body)
    top_k: Any = source.get("top_k", source.get("topK"))
    allowed: Any = source.get("allowed_languages", source.get("allowedLanguages"))
    return {"top_k": parse_top_k(top_k), "allowed_languages": parse_allowed(allowed)}
