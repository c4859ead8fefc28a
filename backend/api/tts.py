"""Text to speech over HTTP: OpenAI-compatible /v1/audio/speech, /api/tts and the voice lists.

Requests are validated before the model is touched; the model is validated against (voices,
G2P) before the first byte is sent. Text that splits into several pieces is streamed (chunked
transfer), one piece synthesised at a time, so the first audio leaves after the first sentence
and memory does not grow with the text. The model stays checked out until the stream closes.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from backend.api import json_object
from backend.audio.encode import CONTENT_TYPES, encode, encode_stream
from backend.errors import BadRequest
from backend.registry import get_registry
from backend.pipelines.tts.common import SAMPLE_RATE_HZ, SpeechRequest, list_voices, validate_request

logger = logging.getLogger(__name__)

bp = Blueprint("tts", __name__)

# OpenAI's voice names: clients written for OpenAI send them; they get the default voice.
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                           "shimmer", "verse"})


def _check_keys(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}")


@bp.post("/v1/audio/speech")
def openai_speech():
    """OpenAI's `audio.speech.create`: {model, input, voice, response_format, speed}."""
    body = json_object()
    _check_keys(body, {"model", "input", "voice", "response_format", "speed", "instructions", "stream_format"})
    if "input" not in body:
        raise BadRequest("missing field 'input' (the text to speak)", field="input")
    if not isinstance(body.get("model", ""), str):
        raise BadRequest("model must be a string", field="model")
    if body.get("stream_format", "audio") != "audio":
        raise BadRequest("only stream_format 'audio' is served (long text is streamed as chunked audio); "
                         "'sse' is not", field="stream_format")
    voice = body.get("voice")
    if isinstance(voice, str) and voice.strip().lower() in OPENAI_VOICES:
        voice = None
    settings = current_app.config["SETTINGS"]
    request = validate_request(settings, text=body["input"], voice=voice, speed=body.get("speed", 1.0),
                               fmt=body.get("response_format", "mp3"))
    return _speak(request)


@bp.post("/api/tts")
def api_tts():
    """This service's own shape: {text, voice, speed, format, lang}."""
    body = json_object()
    _check_keys(body, {"text", "voice", "speed", "format", "lang"})
    if "text" not in body:
        raise BadRequest("missing field 'text'", field="text")
    settings = current_app.config["SETTINGS"]
    request = validate_request(settings, text=body["text"], voice=body.get("voice"), speed=body.get("speed", 1.0),
                               fmt=body.get("format", "wav"), lang=body.get("lang"))
    return _speak(request)


@bp.get("/api/voices")
@bp.get("/v1/audio/voices")
def voices():
    """Voices on disk for the configured backend, with their language; loads no model."""
    settings = current_app.config["SETTINGS"]
    listed = list_voices(settings)
    names = [v["name"] for v in listed]
    default = settings.default_voice if settings.default_voice in names else (names[0] if names else None)
    return jsonify({"backend": settings.backend_for("tts"), "default": default, "voices": listed})


def _speak(request: SpeechRequest) -> Response:
    registry = get_registry()
    lease = registry.lease("tts")
    streaming = False
    try:
        pipe = lease.pipeline
        features = pipe.preprocess(request)
        headers = {"X-Voice": features.voice, "X-Sample-Rate": str(SAMPLE_RATE_HZ)}
        mimetype = CONTENT_TYPES[request.format]
        if len(features.pieces) == 1:
            # One piece: the whole clip in one container with exact sizes in its header.
            audio = pipe.postprocess(pipe.run(features))
            return Response(encode(audio, request.format, SAMPLE_RATE_HZ), mimetype=mimetype, headers=headers)
        chunks = encode_stream(pipe.run(features), request.format, SAMPLE_RATE_HZ)
        response = Response(_logged(chunks), mimetype=mimetype, headers=headers)
        response.call_on_close(lease.release)
        streaming = True
        return response
    finally:
        if not streaming:
            lease.release()


def _logged(chunks):
    """Pass chunks through; a failure after the headers were sent can only end the stream early."""
    try:
        yield from chunks
    except Exception:
        logger.exception("speech stream failed after it started; the client gets truncated audio")
