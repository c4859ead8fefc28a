"""Speech with word timestamps: Kokoro-FastAPI's POST /dev/captioned_speech, and `captions` on /api/tts.

Both answer JSON with the whole audio in base64 (captions need every word's time, so the audio is
not streamed):
- /dev/captioned_speech takes the /v1/audio/speech body and answers Kokoro-FastAPI's shape:
  {"audio": base64, "audio_format": "mp3", "timestamps": [{"word", "start_time", "end_time"}, ...]}.
- /api/tts with "captions": "json" | "srt" | "vtt" answers
  {"audio": base64, "audio_format", "sample_rate", "voice", "captions_format", "captions"}, where
  `captions` is the word list above for "json", else the SRT or WebVTT text (cues of a few words).
Times are seconds in the returned audio (pieces trimmed and joined, pauses, speed all counted),
rising, inside the audio; words are the spoken ones, after normalisation ("$5" -> "five dollars").
"""
from __future__ import annotations

import base64
from dataclasses import replace
from typing import Literal

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, Field

from backend.api.openapi import endpoint
from backend.api.schemas.common import ErrorEnvelope
from backend.api.schemas.tts import OpenAISpeechBody, installed_voice, openai_speech_request
from backend.auth import Policy, protect
from backend.catalog import installed_voices
from backend.pipelines.tts.pipeline import Speech, SpeechRequest, SpokenWord
from backend.registry import get_registry

bp = protect(Blueprint("captions", __name__), Policy.INFERENCE)
CAPTION_FORMATS = ("json", "srt", "vtt")
CUE_MAX_CHARS = 42   # a subtitle line's usual limit
CUE_MAX_S = 5.0
CUE_BREAK_S = 0.6    # a silence this long starts a new cue


class Timestamp(BaseModel):
    word: str
    start_time: float = Field(description="seconds from the start of the audio")
    end_time: float


class CaptionedTts(BaseModel):
    """The speech with captions (/api/tts with `captions`)."""

    audio: str = Field(description="the whole audio, base64")
    audio_format: str
    sample_rate: int
    voice: str
    captions_format: Literal["json", "srt", "vtt"]
    captions: list[Timestamp] | str = Field(description="the words with their times for json, else the SRT or WebVTT text")


class CaptionedSpeech(BaseModel):
    """Kokoro-FastAPI's captioned speech answer."""

    audio: str = Field(description="the whole audio, base64")
    audio_format: str
    timestamps: list[Timestamp]


@bp.post("/dev/captioned_speech")
@endpoint(body=OpenAISpeechBody, responses={200: CaptionedSpeech, 503: ErrorEnvelope})
def captioned_speech(body: OpenAISpeechBody):
    """The /v1/audio/speech body; the audio in base64 with each word's start and end (Kokoro-FastAPI's shape)."""
    speech = speak_timed(openai_speech_request(body, current_app.config["SETTINGS"]))
    return jsonify({"audio": base64.b64encode(speech.content).decode("ascii"), "audio_format": speech.format,
                    "timestamps": [word_json(w) for w in speech.words or []]})


def speak_timed(parsed: SpeechRequest) -> Speech:
    """Synthesise with word times, the audio whole; the model is leased only for the synthesis."""
    registry = get_registry()
    registry.require_available("tts")
    settings = current_app.config["SETTINGS"]
    request = replace(installed_voice(parsed, settings, installed_voices(settings)), timed=True)
    lease = registry.lease("tts")
    try:
        speech = lease.pipeline(request)
        assert isinstance(speech.content, bytes)  # timed speech is never streamed
        return speech
    finally:
        lease.release()


def captioned_answer(speech: Speech, fmt: str):
    """/api/tts's answer when captions are asked for (module docstring)."""
    words = speech.words or []
    captions = [word_json(w) for w in words] if fmt == "json" else render_cues(words, fmt)
    response = jsonify({"audio": base64.b64encode(speech.content).decode("ascii"),  # type: ignore[arg-type]
                        "audio_format": speech.format, "sample_rate": speech.sample_rate_hz, "voice": speech.voice,
                        "captions_format": fmt, "captions": captions})
    response.headers["X-Voice"] = speech.voice
    return response


def word_json(word: SpokenWord) -> dict[str, object]:
    return {"word": word.word, "start_time": word.start_time, "end_time": word.end_time}


def cues(words: list[SpokenWord]) -> list[list[SpokenWord]]:
    """Words grouped into subtitle cues: a new cue after CUE_MAX_CHARS, CUE_MAX_S or a pause of CUE_BREAK_S."""
    out: list[list[SpokenWord]] = []
    for word in words:
        cue = out[-1] if out else None
        if cue is None or len(" ".join(w.word for w in cue + [word])) > CUE_MAX_CHARS or \
                word.end_time - cue[0].start_time > CUE_MAX_S or word.start_time - cue[-1].end_time >= CUE_BREAK_S:
            out.append([word])
        else:
            cue.append(word)
    return out


def _clock(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def render_cues(words: list[SpokenWord], fmt: str) -> str:
    """SubRip (srt) or WebVTT (vtt) text of the words' cues."""
    separator = "," if fmt == "srt" else "."
    blocks = []
    for number, cue in enumerate(cues(words), start=1):
        timing = f"{_clock(cue[0].start_time, separator)} --> {_clock(cue[-1].end_time, separator)}"
        text = " ".join(w.word for w in cue)
        blocks.append(f"{number}\n{timing}\n{text}\n" if fmt == "srt" else f"{timing}\n{text}\n")
    return "\n".join(blocks) if fmt == "srt" else "WEBVTT\n\n" + "\n".join(blocks)
