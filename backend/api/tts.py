"""Text to speech over HTTP: OpenAI-compatible /v1/audio/speech, /api/tts and the voice lists.

A request is validated completely (backend.api.schemas.tts) before the registry is asked for
the model: its fields, then whether the model can be served at all (503 model_unavailable, from
its files), then its voice against the voice names on disk (400; OpenAI's names through
VOICE_ALIASES). Only then is the model leased, so a bad or unservable request never builds,
loads or evicts anything. The pipeline then checks what needs the model (G2P) before the first
byte is sent, and encodes. X-Voice says which voice spoke, X-Voice-Requested what was asked for. Text that splits into several pieces is streamed (chunked transfer), one
piece synthesised at a time, so the first audio leaves after the first sentence and memory does
not grow with the text. The model stays checked out until the stream closes.
"""
from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import replace

from flask import Blueprint, Response, current_app, jsonify

from backend.api.captions import CaptionedTts, captioned_answer, speak_timed
from backend.api.openapi import Binary, endpoint
from backend.api.schemas.common import ErrorEnvelope, OpenObject
from backend.api.schemas.tts import (ApiTtsBody, OpenAISpeechBody, api_tts_request, installed_voice,
                                     openai_speech_request)
from backend.auth import Policy, protect
from backend.catalog import installed_voices
from backend.pipelines.tts.pipeline import SpeechRequest
from backend.pipelines.tts.voices import mix_label, pick_default, voice_language
from backend.registry import get_registry

logger = logging.getLogger(__name__)

bp = protect(Blueprint("tts", __name__), Policy.INFERENCE)
SPEECH_ANSWERS = {200: Binary(("audio/mpeg", "audio/wav", "audio/flac", "audio/ogg", "audio/L16", "audio/aac"),
                              "the speech, streamed when the text is long"),
                  503: ErrorEnvelope}


@bp.post("/v1/audio/speech")
@endpoint(body=OpenAISpeechBody, responses=SPEECH_ANSWERS)
def openai_speech(body: OpenAISpeechBody):
    """OpenAI's `audio.speech.create`: {model, input, voice, response_format, speed}; `stream: false` = one file."""
    return _speak(openai_speech_request(body, current_app.config["SETTINGS"]), stream=body.stream)


@bp.post("/api/tts")
@endpoint(body=ApiTtsBody, responses={**SPEECH_ANSWERS, 200: (SPEECH_ANSWERS[200], CaptionedTts)})
def api_tts(body: ApiTtsBody):
    """This service's own shape: {text, voice, speed, format, lang}; with `captions`, JSON (backend.api.captions)."""
    request = api_tts_request(body, current_app.config["SETTINGS"])
    if body.captions is not None:
        return captioned_answer(speak_timed(request), body.captions)
    return _speak(request)


@bp.get("/api/voices")
@bp.get("/v1/audio/voices")
@endpoint(responses={200: OpenObject})
def voices():
    """Voices on disk for the configured backend, with their language, and the aliases; loads no model."""
    settings = current_app.config["SETTINGS"]
    names = installed_voices(settings)
    default = pick_default(names, settings.default_voice)
    aliases = [{"name": alias, "voice": voice, "installed": voice in names, "speaks": voice if voice in names else default}
               for alias, voice in sorted(settings.voice_aliases.items())]
    return jsonify({"backend": settings.backend_for("tts"), "default": default,
                    "voices": [voice_language(name) for name in names], "aliases": aliases})


def _speak(parsed: SpeechRequest, stream: bool = True) -> Response:
    registry = get_registry()
    registry.require_available("tts")  # 503 before anything is looked up, built or evicted
    settings = current_app.config["SETTINGS"]
    request = installed_voice(parsed, settings, installed_voices(settings))
    if not stream:  # one file: planned without a short first piece (fewer model calls)
        request = replace(request, whole=True)
    # Sized later: the pieces, and so the longest one (what the activations grow with), come from the
    # loaded model's G2P; room for them is made after preprocess, before the model runs.
    lease = registry.lease("tts", sized_later=True)
    streaming = False
    try:
        pipe = lease.pipeline
        features = pipe.preprocess(request)
        lease.admit(features.longest_piece_tokens)
        speech = pipe.postprocess(pipe.run(features))
        headers = {"X-Voice": speech.voice, "X-Sample-Rate": str(speech.sample_rate_hz)}
        if parsed.voice is not None:
            headers["X-Voice-Requested"] = mix_label(parsed.voice)
        if not speech.streamed:
            return Response(speech.content, mimetype=speech.mimetype, headers=headers)
        if not stream:
            return Response(_whole_file(speech.content, request.format), mimetype=speech.mimetype, headers=headers)
        response = Response(_logged(speech.content), mimetype=speech.mimetype, headers=headers)
        response.call_on_close(lease.release)
        streaming = True
        return response
    finally:
        if not streaming:
            lease.release()


def _whole_file(chunks: Iterator[bytes], fmt: str) -> bytes:
    """A stream's chunks as one file; a streamed WAV's header says "unknown length", the file gets its real sizes."""
    data = b"".join(chunks)
    if fmt == "wav":  # the 44-byte PCM header of backend.audio.encode: RIFF size at 4, data size at 40
        data = data[:4] + struct.pack("<I", len(data) - 8) + data[8:40] + struct.pack("<I", len(data) - 44) + data[44:]
    return data


def _logged(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Pass chunks through; a failure after the headers were sent can only end the stream early."""
    try:
        yield from chunks
    except Exception:
        logger.exception("speech stream failed after it started; the client gets truncated audio")
