"""What a valid voice-analysis request is: its options, base64 audio, and the /api/voice-detection body.

Options come from the JSON body, else the multipart form, else the query string (`merge_options`).
The audio itself is checked by backend.audio.decode (header bounds, container, length, NaN)
before the registry is asked for a model; the pipelines' preprocess checks what needs the model
(analysable audio, allowed_languages it knows).
"""
from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from backend.errors import BadRequest

CONTRACT_FORMATS = ("mp3", "wav", "flac", "ogg", "opus")
MAX_LANGUAGES = 200
MAX_TOP_K = 10_000


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item for item in value.split(",")]
    return value


def _language_codes(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    codes = list(dict.fromkeys(item.strip().lower().removeprefix("<|").removesuffix("|>")
                               for item in value if item.strip()))
    return codes or None


LanguageList = Annotated[list[Annotated[str, StringConstraints(max_length=32)]], Field(max_length=MAX_LANGUAGES)]
LanguageCodes = Annotated[LanguageList | None, BeforeValidator(_comma_list)]


class AnalysisOptions(BaseModel):
    """Language-detection options, from the query string, form fields or the JSON body."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K, validation_alias=AliasChoices("top_k", "topK"),
                              description="how many languages to list (default 5; more than the model knows lists all)")
    allowed_languages: LanguageCodes = Field(
        None, validation_alias=AliasChoices("allowed_languages", "allowedLanguages"),
        description="only these language codes, renormalised (a list, or a comma-separated string)")

    def as_request(self) -> dict[str, Any]:
        return {"top_k": self.top_k, "allowed_languages": _language_codes(self.allowed_languages)}


class AnalysisJson(AnalysisOptions):
    """Audio as base64 in JSON (a data: URL prefix is accepted), with the options."""

    audioBase64: str = Field(min_length=1, description="the audio file (wav, flac, ogg, opus, mp3), base64-encoded")


class AnalysisForm(AnalysisOptions):
    """A multipart upload: the audio in the field `file`, options as fields."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, json_schema_extra={"required": ["file"]})

    file: Any = Field(None, json_schema_extra={"type": "string", "format": "binary"}, description="the audio file")


class AiVoiceJson(BaseModel):
    """Audio as base64 in JSON (a data: URL prefix is accepted)."""

    model_config = ConfigDict(extra="ignore")

    audioBase64: str = Field(min_length=1, description="the audio file (wav, flac, ogg, opus, mp3), base64-encoded")


class AiVoiceForm(BaseModel):
    """A multipart upload: the audio in the field `file`."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["file"]})

    file: Any = Field(None, json_schema_extra={"type": "string", "format": "binary"}, description="the audio file")


class VoiceDetectionBody(BaseModel):
    """The /api/voice-detection body."""

    model_config = ConfigDict(extra="ignore")

    language: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = Field(
        description='the language spoken in the audio, e.g. "English"')
    audioFormat: Annotated[Literal[CONTRACT_FORMATS], BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)]
    audioBase64: str = Field(min_length=1, description="the audio file, base64-encoded")


class ContractError(BaseModel):
    """/api/voice-detection's own error envelope."""

    status: Literal["error"]
    message: str


class ContractResult(BaseModel):
    """/api/voice-detection's answer."""

    status: Literal["success"]
    language: str
    classification: Literal["AI_GENERATED", "HUMAN"]
    confidenceScore: float
    explanation: str


class AnalysisResult(BaseModel):
    """The analysis, and what was decoded (`input`)."""

    model_config = ConfigDict(extra="allow")

    status: str
    input: dict[str, Any]


class Disabled(BaseModel):
    """The analysis is disabled by configuration, or its model cannot be served now."""

    model_config = ConfigDict(extra="allow")

    error: dict[str, Any]


def merge_options(*sources: AnalysisOptions | None) -> dict[str, Any]:
    """Each option from the first source that sets it (JSON body, then form, then query)."""
    merged = AnalysisOptions()
    for source in reversed([s for s in sources if s is not None]):
        merged = merged.model_copy(update=source.model_dump(exclude_unset=True))
    return merged.as_request()


def base64_audio(value: str) -> bytes:
    """The bytes of a base64 string (a data: URL prefix is accepted); 400 for anything else."""
    text = value.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"'audioBase64' is not valid base64: {exc}", field="audioBase64") from exc
