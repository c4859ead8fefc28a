"""How much speech a request asks for, bounded after normalisation and G2P, before synthesis starts.

MAX_TEXT_CHARS bounds what a client sends, but normalisation expands it: `"9" * 400` is 400
characters and 1,978 phoneme tokens (117 s of speech, 43 s of compute), while prose is about one
token per character. Synthesis time grows with the phoneme tokens, so the bound is on them, said
in seconds of speech: the tokens of every piece over the speaking rate, divided by the request's
speed (a slower voice says the same tokens for longer, and Kokoro's decoder works per frame).

TOKENS_PER_SECOND is Kokoro-82M v1.0's rate at speed 1: docs/BENCHMARKS.md ("Session options")
has 467 tokens making 30 s (15.6/s), issue 24 has 1,978 making 117 s and 3,324 making 191 s
(about 17/s, silences trimmed). 15 errs long, so the bound never lets more through than it says.
"""
from __future__ import annotations

from backend.errors import SpeechTooLong

TOKENS_PER_SECOND = 15.0


def speech_seconds(tokens: int, speed: float) -> float:
    """About how long `tokens` phoneme tokens take to say at `speed` (1.0 = the voice's own pace)."""
    return tokens / TOKENS_PER_SECOND / max(speed, 1e-6)


def check_speech_length(tokens: int, speed: float, max_seconds: float) -> None:
    """400 when the request would make more than `max_seconds` of speech (MAX_SPEECH_SECONDS; 0 = no bound)."""
    if max_seconds <= 0:
        return
    seconds = speech_seconds(tokens, speed)
    if seconds > max_seconds:
        raise SpeechTooLong(f"the text makes about {seconds:.0f} s of speech ({tokens} phoneme tokens at speed "
                         f"{speed:g}); the limit is {max_seconds:g} s (MAX_SPEECH_SECONDS): send it in parts",
                         field="input", speech_seconds=round(seconds, 1), max_speech_seconds=max_seconds,
                         phoneme_tokens=tokens)
