"""The fp32/int8 decision for a language classifier, judged on real speech instead of synthetic signals.

Synthetic parity signals (harmonics, chirp, noise, a click) are inputs Whisper never saw: its
logits there are flat and tiny changes swap the top-1, so int8 whisper-base "failed" (max logit
error 1.07-1.18 > 0.5, top-1 3/4) while agreeing with fp32 on real speech. The decision here
compares probabilities (what the API returns), on speech:

  1. top-1 agreement with the fp32 reference on at least MIN_AGREEMENT of the clips;
  2. every clip where the reference is confident (top-1 probability >= CONFIDENT) agrees: a
     quantised model may flip a coin the reference was also unsure about, never a clear answer;
  3. the reference's top-1 probability moves by at most MAX_MEDIAN_DROP in the median clip;
  4. when the spoken language is known, accuracy drops by at most MAX_ACCURACY_DROP.

The decision set is natural-sounding speech (the real Kokoro-82M in several languages): all four
rows bind there. On robotic speech (espeak-ng) whisper-base itself is unsure (right on about half
the clips, often at p < 0.5), so flips there say little about int8; only row 2 binds on that
guard set (GUARD_TOLERANCE). Rows are the exporter's own `Parity` records, so `choose()` and the
printed table are unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scripts.export.common import Parity


@dataclass(frozen=True)
class SpeechTolerance:
    min_agreement: float = 0.9  # fraction of clips with the same top-1 as the reference
    confident: float = 0.8  # reference top-1 probability from which a clip must agree
    max_median_drop: float = 0.05  # median |p_ref(top1) - p_cand(same language)|
    max_accuracy_drop: float = 0.05  # fraction of clips, when the truth is known


SPEECH_TOLERANCE = SpeechTolerance()
# Robotic speech: only "every confident clip agrees" binds (the other bounds are open).
GUARD_TOLERANCE = SpeechTolerance(min_agreement=0.0, max_median_drop=1.0, max_accuracy_drop=1.0)


def speech_parity(family: str, variant: str, reference: np.ndarray, candidate: np.ndarray,
                  truth: Sequence[int] | None = None, tolerance: SpeechTolerance = SPEECH_TOLERANCE,
                  label: str = "speech") -> list[Parity]:
    """Parity rows of candidate vs reference probabilities, both [clips, languages] on the same clips;
    `truth` the spoken language's index per clip (-1: not among the model's), `label` names the set in the rows."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2 or not len(reference):
        raise ValueError(f"need two [clips, languages] arrays of one shape, got {reference.shape} and {candidate.shape}")
    ref_top, cand_top = reference.argmax(-1), candidate.argmax(-1)
    agree = ref_top == cand_top
    rows_index = np.arange(len(reference))
    confident = reference[rows_index, ref_top] >= tolerance.confident
    drop = np.abs(reference[rows_index, ref_top] - candidate[rows_index, ref_top])
    rows = [
        Parity(family, variant, f"{label} top-1 agreement", float(agree.mean()), tolerance.min_agreement, True),
        Parity(family, variant, f"{label} top-1 agreement where p >= {tolerance.confident:g}",
               float(agree[confident].mean()) if confident.any() else 1.0, 1.0, True),
        Parity(family, variant, f"{label} median |dp| of top-1", float(np.median(drop)), tolerance.max_median_drop),
    ]
    if truth is not None:
        truth = np.asarray(truth)
        accuracy_drop = float((ref_top == truth).mean() - (cand_top == truth).mean())
        rows.append(Parity(family, variant, f"{label} accuracy drop", accuracy_drop, tolerance.max_accuracy_drop))
    return rows
