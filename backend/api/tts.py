"""Text to speech over HTTP: OpenAI-compatible /v1/audio/speech, /api/tts and the voice lists.

A request is validated completely (backend.api.schemas.tts) before the registry is asked for
the model; the pipeline then checks what needs the model (voices, G2P) before the first byte is
sent, and encodes. Text that splits into several pieces is streamed (chunked transfer), one
piece synthesised at a time, so the first audio leaves after the first sentence and memory does
not grow with the text. The model stays checked out until the stream closes.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify

from backend.api import json_object
from backend.api.schemas.tts import api_tts_request, openai_speech_request
from backend.catalog import pipeline_class
from backend.pipelines.tts.pipeline import SpeechRequest
from backend.pipelines.tts.voices import voice_language
from backend.registry import get_registry

logger = logging.getLogger(__name__)

bp = Blueprint("tts", __name__)


@bp.post("/v1/audio/speech")
def openai_speech():
    """OpenAI's `audio.speech.create`: {model, input, voice, response_format, speed}."""
    return _speak(openai_speech_request(json_object(), current_app.config["SETTINGS"]))


@bp.post("/api/tts")
def api_tts():
    """This service's own shape: {text, voice, speed, format, lang}."""
    return _speak(api_tts_request(json_object(), current_app.config["SETTINGS"]))


@bp.get("/api/voices")
@bp.get("/v1/audio/voices")
def voices():
    """Voices on disk for the configured backend, with their language; loads no model."""
    settings = current_app.config["SETTINGS"]
    backend = settings.backend_for("tts")
    listed = [voice_language(name) for name in sorted(pipeline_class("tts", backend).voice_names(settings))]
    names = [v["name"] for v in listed]
    default = settings.default_voice if settings.default_voice in names else (names[0] if names else None)
    return jsonify({"backend": backend, "default": default, "voices": listed})


def _speak(request: SpeechRequest) -> Response:
    lease = get_registry().lease("tts")
    streaming = False
    try:
        speech = lease.pipeline(request)
        headers = {"X-Voice": speech.voice, "X-Sample-Rate": str(speech.sample_rate_hz)}
        if not speech.streamed:
            return Response(speech.content, mimetype=speech.mimetype, headers=headers)
        response = Response(_logged(speech.content), mimetype=speech.mimetype, headers=headers)
        response.call_on_close(lease.release)
        streaming = True
        return response
    finally:
        if not streaming:
            lease.release()


def _logged(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Pass chunks through; a failure after the headers were sent can only end the stream early."""
    try:
        yield from chunks
    except Exception:
        logger.exception("speech stream failed after it started; the client gets truncated audio")
