"""What a valid animation request is (POST /api/animate, multipart) and the shapes the jobs API answers.

The form's fields are typed here (a multipart field is text: "512", "true"); the upload parts
`image` and `audio` are read by the blueprint. The animation's own ranges are the pipeline's
(backend.pipelines.animation.pipeline.AnimationOptions), which checks them again in the job.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SIZES = (256, 512)
MAX_POSE_STYLE = 45
MAX_EXPRESSION_SCALE = 3.0
MAX_SEED = 2**63 - 1
STATES = Literal["queued", "running", "done", "failed", "cancelled"]
BINARY = {"type": "string", "format": "binary"}


class AnimateForm(BaseModel):
    """A portrait and either speech (`audio`) or `text` to speak first, with SadTalker's options."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"required": ["image"]})

    image: Any = Field(None, json_schema_extra=BINARY, description="the portrait: PNG, JPEG or WebP, one visible face")
    audio: Any = Field(None, json_schema_extra=BINARY,
                       description="the speech (wav, flac, ogg/opus, mp3); or send `text` instead")
    text: str | None = Field(None, min_length=1, description="text spoken by this service's TTS first (instead of audio)")
    voice: str | None = Field(None, max_length=200, description="TTS voice for `text` (as in /api/tts)")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="TTS speed for `text`")
    size: int = Field(256, description="output size in pixels: 256 or 512 (512 costs ~4x the time)")
    still: bool = Field(False, description="fewer head motions (SadTalker's --still)")
    preprocess: Literal["crop", "resize", "full"] = Field(
        "crop", description="crop: the face only; resize: the whole image, resized; full: the face pasted back into the image")
    pose_style: int = Field(0, ge=0, le=MAX_POSE_STYLE, description="one of SadTalker's 46 head-pose styles")
    expression_scale: float = Field(1.0, ge=0.0, le=MAX_EXPRESSION_SCALE, description="how strong expressions are")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="same seed, same inputs: same blinks and head motion")

    @field_validator("size")
    @classmethod
    def _size(cls, value: int) -> int:
        if value not in SIZES:
            raise ValueError(f"size must be one of {', '.join(map(str, SIZES))}")
        return value

    def options(self) -> dict[str, Any]:
        """What the job's pipeline is given (the upload parts and the TTS fields are not options)."""
        return self.model_dump(include={"size", "still", "preprocess", "pose_style", "expression_scale", "seed"})


class JobAccepted(BaseModel):
    """202: the job is queued; poll status_url, then fetch result_url."""

    job_id: str
    state: STATES
    status_url: str
    result_url: str


class JobProgress(BaseModel):
    stage: str = Field(description="queued, face, 3dmm, coefficients, render, encode")
    done: int
    total: int
    percent: float = Field(description="of the whole job, 0..100")
    eta_s: float | None = Field(description="seconds until done, from measured seconds per frame; null until known")


class JobError(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="e.g. no_face_detected, model_unavailable, job_failed, cancelled")
    message: str
    status: int = Field(description="the HTTP status this error has when answered directly")


class Job(BaseModel):
    """A job's record: its state, progress, error and measured facts."""

    model_config = ConfigDict(extra="allow")

    id: str
    state: STATES
    progress: JobProgress
    error: JobError | None
    created_at: float = Field(description="epoch seconds")
    started_at: float | None
    finished_at: float | None
    cancel_requested: bool
    facts: dict[str, Any] = Field(description="seconds_per_frame, peak_mb (the job process's peak RSS), frames, ...")
    status_url: str
    result_url: str
