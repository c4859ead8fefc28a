"""backend.pipelines.tts.joins: silence trimmed by energy with a fade; pauses by boundary."""
from __future__ import annotations

import numpy as np
import pytest

from backend.pipelines.tts.joins import FADE_S, KEEP_S, PauseLengths, gap, loud_span, trim

RATE = 24000


def padded_tone(lead_s: float, tone_s: float, tail_s: float, noise: float = 1e-4) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(tone_s * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    audio = np.concatenate([np.zeros(int(lead_s * RATE)), tone, np.zeros(int(tail_s * RATE))])
    return (audio + noise * rng.standard_normal(audio.size)).astype(np.float32)


def test_leading_and_trailing_silence_go_down_to_the_kept_margin() -> None:
    audio = padded_tone(0.25, 1.0, 0.75)
    out = trim(audio, RATE)
    assert abs(len(out) / RATE - (1.0 + 2 * KEEP_S)) <= 0.011  # one 10 ms frame of rounding
    fade = int(FADE_S * RATE)
    assert out[0] == 0.0 and abs(out[-1]) <= 1e-3  # faded in and out: no click
    assert np.abs(out[fade:-fade]).max() > 0.29  # the tone itself untouched


def test_a_quiet_ending_above_the_threshold_is_kept() -> None:
    loud, soft = padded_tone(0.1, 0.5, 0.0), 0.01 * padded_tone(0.0, 0.3, 0.0, noise=0)  # -30 dB "s"
    audio = np.concatenate([loud, soft, np.zeros(int(0.6 * RATE), dtype=np.float32)])
    assert abs(len(trim(audio, RATE)) / RATE - (0.5 + 0.3 + 2 * KEEP_S)) <= 0.011


def test_a_silent_piece_trims_to_nothing() -> None:
    assert loud_span(np.zeros(RATE, dtype=np.float32), RATE) is None
    assert trim(np.zeros(RATE, dtype=np.float32), RATE).size == 0


@pytest.mark.parametrize("boundary, seconds", [("word", 0.0), ("clause", 0.2), ("sentence", 0.45),
                                               ("paragraph", 0.9), ("pause", 0.0), ("end", 0.0)])
def test_the_join_silence_counts_the_kept_margins(boundary, seconds) -> None:
    zeros = gap(boundary, PauseLengths(), RATE)
    expected = 0 if boundary in ("pause", "end") else max(0.0, seconds - 2 * KEEP_S)
    assert zeros.size == round(expected * RATE) and not zeros.any()
