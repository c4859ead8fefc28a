import numpy as np
import pytest

from backend.pipelines.animation import coeffs


def test_savgol_keeps_quadratics_and_smooths_noise():
    t = np.arange(40, dtype=np.float64)
    quadratic = np.stack([0.01 * t ** 2 - t + 3, 0.5 * t], axis=1)
    assert np.allclose(coeffs.savgol(quadratic), quadratic, atol=1e-4)
    noisy = quadratic + np.random.default_rng(0).standard_normal(quadratic.shape)
    assert np.abs(coeffs.savgol(noisy) - quadratic).mean() < np.abs(noisy - quadratic).mean() * 0.6


def test_savgol_matches_scipy_when_available():
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(1).standard_normal((50, 6))
    for frames in (50, 13, 12, 5, 3):
        window = 13 if frames >= 13 else (frames - 1) // 2 * 2 + 1
        assert np.allclose(coeffs.savgol(x[:frames]), signal.savgol_filter(x[:frames], window, 2, axis=0), atol=1e-5)


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_savgol_short_sequences_do_not_crash(frames):
    assert coeffs.savgol(np.ones((frames, 6))).shape == (frames, 6)


def test_blinks_are_seeded_and_well_formed():
    a = coeffs.blink_ratio(300, np.random.default_rng(5))
    b = coeffs.blink_ratio(300, np.random.default_rng(5))
    assert np.array_equal(a, b) and a.shape == (300, 1)
    assert a.max() == 1.0 and np.isin(a, np.float32([0, 0.5, 0.9, 1.0])).all()
    assert coeffs.blink_ratio(20, np.random.default_rng(0)).max() == 0
    assert coeffs.blink_ratio(21, np.random.default_rng(0)).shape == (21, 1)  # the reference crashes here
