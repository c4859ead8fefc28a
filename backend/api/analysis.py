"""Voice analysis over HTTP: language, AI-voice, both at once, and the /api/voice-detection contract.

Audio arrives as a multipart upload (field `file`), a raw body (any Content-Type but JSON and
form data), or JSON with base64 in `audioBase64` (a data: URL prefix is accepted). It is
decoded once by backend.audio.decode and handed to the pipelines as mono float32 at 16 kHz.
Request shapes (options, base64, the contract body) are checked in backend.api.schemas.analysis.

/api/voice-detection speaks the envelope its clients expect: {"status": "success", ...} or
{"status": "error", "message"} with a 4xx/5xx code, never the generic {"error": {...}}.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from backend.api.openapi import Binary, endpoint, read_body
from backend.api.schemas.analysis import (AiVoiceForm, AiVoiceJson, AnalysisForm, AnalysisJson, AnalysisOptions,
                                          AnalysisResult, ContractError, ContractResult, Disabled,
                                          VoiceDetectionBody, base64_audio, merge_options)
from backend.audio.decode import DecodedAudio, decode_audio, decode_mb, probe_audio
from backend.auth import Policy, protect
from backend.audio.features import SAMPLE_RATE_HZ
from backend.errors import ApiError, BadRequest, ModelDisabled, error_response, from_http_exception
from backend.pipelines.ai_voice.detector import window_samples_for
from backend.pipelines.language.detector import WINDOW_S as LANGUAGE_WINDOW
from backend.registry import get_registry

logger = logging.getLogger(__name__)

bp = protect(Blueprint("analysis", __name__), Policy.INFERENCE)
# A request's size for the registry's cost by size: seconds, capped by the window the model sees at once.
LANGUAGE_WINDOW_S = float(LANGUAGE_WINDOW)
AI_VOICE_WINDOW_S = window_samples_for(1024) / SAMPLE_RATE_HZ  # AST's usual window: 1024 frames, 10.24 s

CONTRACT_ENDPOINT = "analysis.voice_detection"
AUDIO_BODY = Binary(("application/octet-stream", "audio/wav", "audio/mpeg", "audio/flac", "audio/ogg"),
                    "the audio file as the raw body")
ANSWERS = {200: AnalysisResult, 503: Disabled}


# --- routes ------------------------------------------------------------------------------------
@bp.post("/api/detect-language")
@endpoint(body=AnalysisJson, form=AnalysisForm, raw=AUDIO_BODY, query=AnalysisOptions, responses=ANSWERS,
          large_json=True)
def detect_language(body: AnalysisJson | None, form: AnalysisForm | None, query: AnalysisOptions):
    """Spoken language (Whisper): top-k with probabilities."""
    _servable_or_raise("language")
    options = merge_options(body, form, query)
    audio = _decoded_upload(body)
    result = _detect_language(audio, options)
    return jsonify({"status": "success", **result, "input": audio.describe()})


@bp.post("/api/detect-ai-voice")
@endpoint(body=AiVoiceJson, form=AiVoiceForm, raw=AUDIO_BODY, responses=ANSWERS, large_json=True)
def detect_ai_voice(body: AiVoiceJson | None, form: AiVoiceForm | None):
    """AI-generated-voice score and decision (AST classifier)."""
    _servable_or_raise("ai_voice")
    audio = _decoded_upload(body)
    result = _detect_ai_voice(audio)
    return jsonify({"status": "success", **result, "input": audio.describe()})


@bp.post("/api/analyze")
@endpoint(body=AnalysisJson, form=AnalysisForm, raw=AUDIO_BODY, query=AnalysisOptions, responses=ANSWERS,
          large_json=True)
def analyze(body: AnalysisJson | None, form: AnalysisForm | None, query: AnalysisOptions):
    """Both analyses on one decode; a disabled one answers {"status": "disabled"} in its slot."""
    registry = get_registry()
    if not registry.is_enabled("language") and not registry.is_enabled("ai_voice"):
        raise ModelDisabled("language detection and AI-voice detection are both disabled by configuration")
    for name in ("language", "ai_voice"):
        if registry.is_enabled(name):
            registry.require_available(name)
    options = merge_options(body, form, query)
    audio = _decoded_upload(body)
    language = (_detect_language(audio, options) if registry.is_enabled("language")
                else _disabled_slot("language"))
    ai_voice = _detect_ai_voice(audio) if registry.is_enabled("ai_voice") else _disabled_slot("ai_voice")
    return jsonify({"status": "success", "language": language, "ai_voice": ai_voice, "input": audio.describe()})


@bp.post("/api/voice-detection")
@endpoint(body=VoiceDetectionBody, responses={200: ContractResult, 503: ContractError}, errors=ContractError,
          large_json=True)
def voice_detection(body: VoiceDetectionBody):
    """{"language", "audioFormat", "audioBase64"} -> {"status", "language", "classification", "confidenceScore", "explanation"}."""
    _servable_or_raise("ai_voice")
    audio = _decode(base64_audio(body.audioBase64))
    result = _detect_ai_voice(audio)
    synthetic = result["is_ai_generated"]
    confidence = result["score"] if synthetic else 1.0 - result["score"]
    return jsonify({
        "status": "success", "language": body.language,
        "classification": "AI_GENERATED" if synthetic else "HUMAN",
        "confidenceScore": round(confidence, 4),
        "explanation": _explanation(result, synthetic),
    })


@bp.errorhandler(ApiError)
def _analysis_error(error: ApiError):
    if request.endpoint == CONTRACT_ENDPOINT:
        return _contract_error(error.status, error.message, error.headers)
    if isinstance(error, ModelDisabled):
        # Disabled is a state, not a fault: say so at the top level too, never a made-up answer.
        body = {"status": "disabled", **error.to_dict()}
        response = jsonify(body)
        response.status_code = error.status
        return response
    return error_response(error)


@bp.errorhandler(HTTPException)
def _analysis_http_error(error: HTTPException):
    # The one mapping of Werkzeug's errors (backend.errors), then this blueprint's envelopes.
    return _analysis_error(from_http_exception(error, current_app.config.get("MAX_CONTENT_LENGTH")))


# --- helpers -----------------------------------------------------------------------------------
def _contract_error(status: int, message: str, headers: dict[str, str] | None = None):
    response = jsonify({"status": "error", "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _enabled_or_raise(name: str) -> None:
    if not get_registry().is_enabled(name):
        what = {"language": "language detection (ENABLE_LANGUAGE_DETECTION)",
                "ai_voice": "AI-voice detection (ENABLE_AI_VOICE_DETECTION)"}[name]
        raise ModelDisabled(f"{what} is disabled by configuration", model=name)


def _servable_or_raise(name: str) -> None:
    """Enabled and its files present (503 otherwise), checked before the upload is decoded."""
    _enabled_or_raise(name)
    get_registry().require_available(name)


def _disabled_slot(name: str) -> dict[str, Any]:
    return {"status": "disabled", "model": name, "message": f"{name} is disabled by configuration"}


def _detect_language(audio: DecodedAudio, options: dict[str, Any]) -> dict[str, Any]:
    # The request's size for its cost: seconds of audio, capped by the window the model sees at once.
    with get_registry().acquire("language", size=min(audio.seconds, LANGUAGE_WINDOW_S)) as pipe:
        return pipe({"audio": audio.samples, **options})


def _detect_ai_voice(audio: DecodedAudio) -> dict[str, Any]:
    with get_registry().acquire("ai_voice", size=min(audio.seconds, AI_VOICE_WINDOW_S)) as pipe:
        return pipe({"audio": audio.samples})


def _decoded_upload(body: AnalysisJson | AiVoiceJson | None) -> DecodedAudio:
    """The request's audio, from JSON base64, a multipart `file` field or the raw body."""
    if body is not None:
        return _decode(base64_audio(body.audioBase64))
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise BadRequest("multipart uploads carry the audio in the field 'file'", field="file")
        return _decode(upload.read())
    return _decode(_raw_body())


def _raw_body() -> bytes:
    """The raw body within MAX_UPLOAD_MB, chunked ones included (Werkzeug would cut those silently)."""
    data = read_body(current_app.config["MAX_CONTENT_LENGTH"])
    if data is None:
        raise RequestEntityTooLarge()
    return data


def _decode(data: bytes) -> DecodedAudio:
    """Bounds from the header first (seconds, channels, rate), then the decode's memory admitted like a model's."""
    settings = current_app.config["SETTINGS"]
    header = probe_audio(data, max_seconds=settings.max_audio_seconds, max_channels=settings.max_audio_channels,
                         max_rate_hz=settings.max_audio_sample_rate)
    with get_registry().transient("audio decode", decode_mb(header, settings.max_audio_seconds)):
        return decode_audio(data, max_seconds=settings.max_audio_seconds)


def _explanation(result: dict[str, Any], synthetic: bool) -> str:
    verdict = "at or above" if synthetic else "below"
    windows = result["windows"]
    return (f"Synthetic-voice score {result['score']:.3f} (mean over {windows} window{'s' if windows != 1 else ''} "
            f"of {result['seconds_analysed']:.1f} s of audio, highest window {result['score_max']:.3f}) is {verdict} "
            f"the decision threshold {result['threshold']:.2f}; model {result['model']}, "
            f"labels counted as synthetic: {', '.join(result['synthetic_labels'])}.")
