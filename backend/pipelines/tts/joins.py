"""How synthesised pieces join: each piece's own leading/trailing silence trimmed, then a pause by boundary.

Kokoro pads every piece with ~0.25 s of silence before and 0.5-0.8 s after it, so untrimmed
joins are ~1 s gaps, mid-sentence too. Trimming is energy-based: 10 ms frames quieter than
TRIM_BELOW_DB under the piece's loudest frame are silence; KEEP_S of it stays on each side and
the edges fade over FADE_S (no click where the cut falls inside low-level noise). Then the
pause for the boundary after the piece (pieces.BOUNDARIES) is added: TTS_PAUSE_*_S settings,
counted as the whole silence at the join, the kept margins included. Pure functions only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_S = 0.010
TRIM_BELOW_DB = -42.0   # below the piece's loudest 10 ms frame: silence (a soft final "s" is ~ -30 dB)
SILENCE_FLOOR = 1e-3    # frames at or under -60 dBFS are silence too, unless the whole piece is that quiet
KEEP_S = 0.04           # of silence kept at each trimmed edge
FADE_S = 0.015


@dataclass(frozen=True)
class PauseLengths:
    """Silence at a join by the boundary there, seconds (the kept margins included)."""

    word: float = 0.0
    clause: float = 0.2
    sentence: float = 0.45
    paragraph: float = 0.9
    pause: float = 0.0   # an explicit [pause:...] follows: it is the whole pause
    end: float = 0.0

    def seconds(self, boundary: str) -> float:
        return float(getattr(self, boundary))


def loud_span(samples: np.ndarray, rate: int, below_db: float = TRIM_BELOW_DB) -> tuple[int, int] | None:
    """(first, last+1) sample of the frames that are not silence; None when the piece is silent."""
    frame = max(1, int(round(rate * FRAME_S)))
    count = len(samples) // frame
    if count == 0:
        return None
    blocks = samples[:count * frame].astype(np.float32).reshape(count, frame)
    energy = np.sqrt(np.mean(blocks * blocks, axis=1))
    peak = float(energy.max())
    if peak <= 0:
        return None
    threshold = max(peak * 10 ** (below_db / 20), min(SILENCE_FLOOR, peak / 10))
    loud = np.flatnonzero(energy > threshold)
    if loud.size == 0:
        return None
    return int(loud[0]) * frame, min(len(samples), (int(loud[-1]) + 1) * frame)


def trim_bounds(samples: np.ndarray, rate: int, keep_s: float = KEEP_S) -> tuple[int, int]:
    """(start, stop) of what trim() keeps of a piece; (0, 0) when the piece is silent."""
    span = loud_span(samples, rate)
    if span is None:
        return 0, 0
    keep = int(round(rate * keep_s))
    return max(0, span[0] - keep), min(len(samples), span[1] + keep)


def trim(samples: np.ndarray, rate: int, keep_s: float = KEEP_S, fade_s: float = FADE_S) -> np.ndarray:
    """The piece without its leading and trailing silence, keep_s of it left on each side, edges faded."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    start, stop = trim_bounds(samples, rate, keep_s)
    out = samples[start:stop].copy()
    fade = min(int(round(rate * fade_s)), len(out) // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    return out


def gap(boundary: str, lengths: PauseLengths, rate: int, keep_s: float = KEEP_S) -> np.ndarray:
    """Zeros to add after a trimmed piece so the join's silence is lengths.seconds(boundary) in all."""
    seconds = lengths.seconds(boundary)
    if boundary in ("pause", "end"):
        return np.zeros(0, dtype=np.float32)
    return np.zeros(int(round(rate * max(0.0, seconds - 2 * keep_s))), dtype=np.float32)


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(int(round(rate * seconds)), dtype=np.float32)
