"""backend.pipelines.windows: where windows start, what they cover, a stable softmax."""
from __future__ import annotations

import numpy as np
import pytest

from backend.pipelines.language.detector import WINDOW_SAMPLES
from backend.pipelines.windows import covered_samples, softmax, window_starts

SR = 16000


@pytest.mark.parametrize("seconds, expected", [(0.5, 1), (30, 1), (30.5, 2), (65, 3), (90, 3), (1000, 10)])
def test_windows_cover_the_audio(seconds, expected) -> None:
    n = int(seconds * SR)
    starts = window_starts(n, WINDOW_SAMPLES, max_windows=10)
    assert len(starts) == expected and starts[0] == 0 and starts == sorted(starts)
    assert all(0 <= s <= max(0, n - WINDOW_SAMPLES) for s in starts)
    if n >= WINDOW_SAMPLES:
        assert starts[-1] + WINDOW_SAMPLES == n  # the last window is flush with the end, not mostly padding
    covered = covered_samples(starts, WINDOW_SAMPLES, n)
    assert covered == (n if expected < 10 else 10 * WINDOW_SAMPLES)


def test_windows_with_hop_overlap() -> None:
    assert window_starts(100, 40, max_windows=99, hop=20) == [0, 20, 40, 60]
    assert window_starts(110, 40, max_windows=99, hop=20) == [0, 20, 40, 60, 70]
    assert covered_samples([0, 20, 40, 60], 40, 100) == 100
    assert covered_samples([0, 60], 40, 100) == 80


def test_softmax_is_stable() -> None:
    out = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(out, [[0.5, 0.5], [0.25, 0.75]])
