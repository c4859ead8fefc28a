"""Inline controls in a TTS text: pauses `[pause:0.5s]` and pronunciations `[Kokoro](/kˈOkəɹO/)`.

The link syntax is Kokoro's own G2P's (misaki) and fastkokoro's: the bracketed word is shown,
the phonemes between slashes are spoken, bypassing G2P. A pause becomes silence of that length
between pieces. `parse(text, rewrite)` masks the controls, lets `rewrite` (text normalisation)
see the rest as one text (so "Dr. [Kokoro](/.../)" still reads "Doctor"), then splits it into
Text, Phonemes and Pause segments, in order. Phoneme input (`input_type: "phonemes"`) is one
Text segment per run between pauses, whose G2P is the identity.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from backend.errors import BadRequest

PAUSE_MAX_S = 10.0
MAX_CONTROLS = 500  # placeholders come from one Unicode private-use block
_PLACEHOLDER_BASE = 0xE000
_PAUSE = re.compile(r"\[\s*pause\s*:\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*\]", re.IGNORECASE)
_OVERRIDE = re.compile(r"\[([^\[\]]{1,200})\]\(/([^/()]{1,500})/\)")
_CONTROL = re.compile(f"{_PAUSE.pattern}|{_OVERRIDE.pattern}", re.IGNORECASE)
_PLACEHOLDER = re.compile(f"[{chr(_PLACEHOLDER_BASE)}-{chr(_PLACEHOLDER_BASE + MAX_CONTROLS - 1)}]")


@dataclass(frozen=True)
class Text:
    """Written text, for normalisation and G2P."""

    text: str


@dataclass(frozen=True)
class Phonemes:
    """Kokoro phonemes spoken as given (an override's, or phoneme input)."""

    phonemes: str
    shown: str = ""  # the word the override stands for, for error messages


@dataclass(frozen=True)
class Pause:
    """Silence of `seconds` between the speech before and after it."""

    seconds: float


Segment = Text | Phonemes | Pause


def pause_seconds(value: str, unit: str | None) -> float:
    seconds = float(value) / (1000.0 if (unit or "s").lower() == "ms" else 1.0)
    if not 0 <= seconds <= PAUSE_MAX_S:
        raise BadRequest(f"a pause of {seconds:g} s is outside 0..{PAUSE_MAX_S:g} s", field="input")
    return seconds


def _control(match: re.Match) -> Segment:
    if match.group(1) is not None:
        return Pause(pause_seconds(match.group(1), match.group(2)))
    phonemes = match.group(4).strip()
    if not phonemes:
        raise BadRequest(f"the pronunciation of [{match.group(3)}] is empty", field="input")
    return Phonemes(phonemes, shown=match.group(3))


def parse(text: str, rewrite: Callable[[str], str] | None = None) -> list[Segment]:
    """Text, Phonemes and Pause segments in order; `rewrite` sees the text with each control masked."""
    controls: list[Segment] = []

    def mask(match: re.Match) -> str:
        if len(controls) >= MAX_CONTROLS:
            raise BadRequest(f"at most {MAX_CONTROLS} pauses and pronunciations per request", field="input")
        controls.append(_control(match))
        return chr(_PLACEHOLDER_BASE + len(controls) - 1)

    masked = _CONTROL.sub(mask, _PLACEHOLDER.sub("", text))
    if rewrite is not None:
        masked = rewrite(masked)
    segments: list[Segment] = []
    position = 0
    for match in _PLACEHOLDER.finditer(masked):
        if match.start() > position:
            segments.append(Text(masked[position:match.start()]))
        segments.append(controls[ord(match.group(0)) - _PLACEHOLDER_BASE])
        position = match.end()
    if position < len(masked):
        segments.append(Text(masked[position:]))
    return [s for s in segments if not isinstance(s, Text) or s.text.strip()] or []


def parse_phonemes(text: str) -> list[Segment]:
    """Phoneme input: Text segments holding phonemes (their G2P is the identity), `[pause:...]` still honoured."""
    segments: list[Segment] = []
    position = 0
    for match in _PAUSE.finditer(text):
        if text[position:match.start()].strip():
            segments.append(Text(text[position:match.start()].strip()))
        segments.append(Pause(pause_seconds(match.group(1), match.group(2))))
        position = match.end()
    if text[position:].strip():
        segments.append(Text(text[position:].strip()))
    return segments
