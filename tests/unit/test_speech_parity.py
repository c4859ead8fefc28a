"""The real-speech fp32/int8 decision as a pure function of probabilities."""
from __future__ import annotations

import numpy as np
import pytest

from scripts.speech_parity import SpeechTolerance, speech_parity


def probs(*rows):
    return np.array(rows, dtype=np.float64)


REFERENCE = probs([0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.45, 0.55, 0.0], [0.1, 0.1, 0.8])


def by_metric(rows):
    return {row.metric.split(" where")[0] if "where" in row.metric else row.metric: row for row in rows}


def test_identical_probabilities_pass_every_row():
    rows = speech_parity("whisper", "int8", REFERENCE, REFERENCE, truth=[0, 1, 1, 2])
    assert [row.ok for row in rows] == [True, True, True, True]
    assert by_metric(rows)["speech accuracy drop"].value == 0.0


def test_a_flip_on_an_unsure_clip_is_tolerated_within_the_agreement_bound():
    candidate = REFERENCE.copy()
    candidate[2] = [0.55, 0.45, 0.0]  # the reference said 0.55: unsure
    rows = speech_parity("whisper", "int8", REFERENCE, candidate, tolerance=SpeechTolerance(min_agreement=0.75))
    assert all(row.ok for row in rows)
    assert rows[0].value == 0.75


def test_a_flip_on_a_confident_clip_fails_even_when_agreement_is_high():
    candidate = REFERENCE.copy()
    candidate[0] = [0.3, 0.7, 0.0]  # the reference said 0.9
    rows = speech_parity("whisper", "int8", REFERENCE, candidate, tolerance=SpeechTolerance(min_agreement=0.5))
    assert [row.ok for row in rows[:2]] == [True, False]


def test_probability_drift_without_flips_fails_the_median_bound():
    candidate = probs([0.7, 0.3, 0.0], [0.3, 0.7, 0.0], [0.4, 0.6, 0.0], [0.2, 0.1, 0.7])
    rows = speech_parity("whisper", "int8", REFERENCE, candidate)
    assert rows[0].ok and rows[1].ok and not rows[2].ok
    assert rows[2].value == pytest.approx(0.1)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="one shape"):
        speech_parity("whisper", "int8", REFERENCE, REFERENCE[:2])
