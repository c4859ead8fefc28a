"""Talking-head animation over HTTP: POST /api/animate queues a job; /api/jobs/<id> watches, fetches, cancels it.

A request is checked completely before it is queued, cheapest first: the animation enabled
and (local jobs) its files present (503 naming each missing file), the form's fields, the
image's header (format, pixel count: a decompression bomb is refused before a pixel is
decoded), audio or text, and whether a job could ever fit this service's budget (local jobs:
503 with needed_mb and budget_mb and how to run a jobs worker, before any decoding or speech
synthesis). Then the speech is decoded (or synthesised by the TTS pipeline through the
registry) to 16 kHz and its length checked against MAX_ANIMATION_SECONDS, and the job is
queued: 202 with its URLs and a Location header. What needs the face model (a portrait with
no face: no_face_detected, 422) is found by the job within its first stage and reported as the
job's error. With JOBS_BACKEND=rq this service only enqueues: no model and no budget refusal here.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from flask import Blueprint, current_app, jsonify, send_file, url_for

from backend.api.openapi import Binary, endpoint
from backend.api.schemas.animation import AnimateForm, Job, JobAccepted
from backend.api.schemas.common import ErrorEnvelope
from backend.auth import Policy, protect
from backend.errors import (BadRequest, BudgetExceeded, InvalidImage, JobFinished, JobNotDone, NotFound,
                            PayloadTooLarge)
from backend.jobs import get_jobs
from backend.jobs.animation import KIND, need_mb
from backend.jobs.records import JobRecord
from backend.registry import get_registry

logger = logging.getLogger(__name__)

bp = protect(Blueprint("animation", __name__), Policy.INFERENCE)
#: an upper bound of speech per character (people speak ~15 characters per second at speed 1):
#: text that cannot fit MAX_ANIMATION_SECONDS is refused before it is synthesised
MAX_CHARS_PER_SECOND = 25
WORKER_FIX = ("run jobs on a worker with enough memory: JOBS_BACKEND=rq and REDIS_URL on this service, "
              "scripts/worker.sh on the worker machine (README: Animation)")


@bp.post("/api/animate")
@endpoint(form=AnimateForm, responses={202: JobAccepted, 422: ErrorEnvelope, 503: ErrorEnvelope})
def animate(form: AnimateForm):
    """Queue a talking-head video: a portrait plus speech (audio, or text spoken by the TTS first)."""
    from flask import request

    from backend.pipelines.animation.pipeline import AnimationOptions, check_audio, image_size

    settings, jobs = current_app.config["SETTINGS"], get_jobs()
    _servable_or_raise(jobs.backend)
    image = _upload(request.files.get("image"))
    if image is None:
        raise InvalidImage("image is required: a PNG, JPEG or WebP file in the form field 'image'", field="image")
    image_size(image, settings.max_image_pixels)  # the header alone: no pixel decoded
    audio = _upload(request.files.get("audio"))
    if (audio is None) == (form.text is None):
        raise BadRequest("send either 'audio' (a speech file) or 'text' (spoken by this service's TTS), not both "
                         "and not neither", field="audio")
    options = form.options()
    AnimationOptions.from_mapping(options)  # the pipeline's own ranges
    need = need_mb(options["size"], jobs.measured_peak_mb(KIND, options["size"]))
    if jobs.backend == "local":
        _fits_or_refuse(need)
    samples = _speech(audio, form, settings)
    record = jobs.submit(kind=KIND, options=options, image=image,
                         audio=check_audio(samples, settings.max_animation_seconds), need_mb=need)
    urls = _urls(record.id)
    response = jsonify({"job_id": record.id, "state": record.state, **urls})
    response.status_code = 202
    response.headers["Location"] = urls["status_url"]
    return response


@bp.get("/api/jobs/<job_id>")
@endpoint(responses={200: Job})
def job_status(job_id: str):
    """A job's state, progress (stage, done, total, percent, eta_s), error and measured facts."""
    return jsonify(_public(_job_or_404(job_id)))


@bp.get("/api/jobs/<job_id>/result")
@endpoint(responses={200: Binary(("video/mp4",), "the MP4: H.264 video + AAC audio, 25 fps"), 409: ErrorEnvelope})
def job_result(job_id: str):
    """The finished video; 409 while the job is queued or running, or when it failed or was cancelled."""
    record = _job_or_404(job_id)
    result = get_jobs().open_result(record) if record.state == "done" else None
    if result is None:
        why = {"queued": "is still queued", "running": "is still running", "failed": "failed",
               "cancelled": "was cancelled"}.get(record.state, "has no result any more")
        raise JobNotDone(f"job {job_id} {why}: no video to send", state=record.state, progress=record.progress,
                         job_error=record.error, status_url=_urls(job_id)["status_url"])
    return send_file(result, mimetype="video/mp4", download_name=f"{job_id}.mp4", conditional=True,
                     max_age=0)


@bp.delete("/api/jobs/<job_id>")
@endpoint(responses={200: Job, 202: Job, 409: ErrorEnvelope})
def job_cancel(job_id: str):
    """Cancel a job: a queued one at once (200), a running one at its next render batch (202)."""
    jobs = get_jobs()
    record = _job_or_404(job_id)
    if record.finished:
        raise JobFinished(f"job {job_id} already ended ({record.state}): nothing to cancel", state=record.state)
    state = jobs.cancel(job_id)
    if state is None:
        raise _not_found(job_id)
    response = jsonify(_public(_job_or_404(job_id)))
    response.status_code = 200 if state == "cancelled" else 202
    return response


# --- helpers -----------------------------------------------------------------------------------
def _servable_or_raise(backend: str) -> None:
    """Disabled: 503 model_disabled; local jobs also need their files here (503 naming each missing one)."""
    registry = get_registry()
    if backend == "local":
        registry.require_available(KIND)
    elif not registry.is_enabled(KIND):
        registry.require_available(KIND)  # says it is disabled; an rq worker has the files, not this service


def _fits_or_refuse(need: float) -> None:
    """503 up front when a job can never fit beside this service (what a 512 MB instance answers)."""
    registry = get_registry()
    fits, free = registry.job_ever_fits(need)
    if fits:
        return
    budget = registry.effective_budget_mb
    raise BudgetExceeded(
        f"an animation job needs about {need:.0f} MB but at most {free:.0f} MB of this service's {budget:.0f} MB "
        f"budget is ever free: it can never run here; {WORKER_FIX}, or raise MEMORY_BUDGET_MB on a larger instance",
        needed_mb=round(need), budget_mb=round(budget), free_mb=round(free), fix=WORKER_FIX)


def _speech(audio: bytes | None, form: AnimateForm, settings: Any) -> np.ndarray:
    """The speech as 16 kHz mono float32: the upload decoded, or the text synthesised by the TTS pipeline."""
    from backend.audio.decode import decode_audio

    limit = settings.max_animation_seconds
    if audio is not None:
        try:
            return decode_audio(audio, max_seconds=limit).samples
        except PayloadTooLarge as exc:
            raise PayloadTooLarge(f"the audio is longer than {limit} s (MAX_ANIMATION_SECONDS)",
                                  max_seconds=limit) from exc
    assert form.text is not None
    if len(form.text) > limit * MAX_CHARS_PER_SECOND * form.speed:
        raise PayloadTooLarge(f"the text is {len(form.text)} characters: more than {limit} s of speech "
                              "(MAX_ANIMATION_SECONDS)", max_seconds=limit)
    return _synthesised(form.text, form.voice, form.speed, settings)


def _synthesised(text: str, voice: str | None, speed: float, settings: Any) -> np.ndarray:
    from backend.api.schemas.tts import installed_voice, validate_request
    from backend.audio.decode import resample
    from backend.catalog import pipeline_class

    registry = get_registry()
    registry.require_available("tts")
    request = validate_request(settings, text=text, voice=voice, speed=speed, fmt="pcm")
    voices = pipeline_class("tts", settings.backend_for("tts")).voice_names(settings)
    request = installed_voice(request, settings, sorted(voices))
    with registry.acquire("tts") as pipe:
        speech = pipe(request)
        pcm = speech.content if not speech.streamed else b"".join(speech.content)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return resample(samples, speech.sample_rate_hz)


def _upload(part: Any) -> bytes | None:
    if part is None:
        return None
    data = part.read()
    return data or None


def _urls(job_id: str) -> dict[str, str]:
    return {"status_url": url_for("animation.job_status", job_id=job_id),
            "result_url": url_for("animation.job_result", job_id=job_id)}


def _public(record: JobRecord) -> dict[str, Any]:
    return {**record.public(), **_urls(record.id)}


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"no job {job_id!r}: unknown, or expired (results are kept JOB_TTL_S after they finish)")


def _job_or_404(job_id: str) -> JobRecord:
    record = get_jobs().get(job_id)
    if record is None:
        raise _not_found(job_id)
    return record
