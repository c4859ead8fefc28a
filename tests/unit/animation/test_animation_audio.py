import numpy as np
import pytest

from backend.pipelines.animation import audio


def test_window_starts_truncate_toward_zero():
    assert [audio.window_start(i) for i in range(9)] == [-6, -3, 0, 3, 6, 9, 12, 16, 19]
    for i in range(0, 3000, 7):
        assert audio.window_start(i) == int(80 * ((i - 2) / 25))


def test_shapes_follow_the_frame_count():
    samples = np.random.default_rng(0).standard_normal(16_000 * 2 + 500).astype(np.float32) * 0.1
    windows = audio.mel_windows(samples)
    frames = audio.frame_count(samples.size)
    assert frames == 50
    assert windows.shape == (50, 80, 16) and windows.dtype == np.float32
    assert audio.mel_spectrogram(samples[:frames * 640]).shape == (1 + 16 * frames // 5, 80)
    assert windows.min() >= -4 and windows.max() <= 4


def test_filterbank_is_slaney():
    bank = audio.mel_filterbank()
    assert bank.shape == (80, 401)
    # Slaney area normalisation: every triangle integrates to ~2/(f_hi - f_lo) * (f_hi - f_lo)/2 = 1 per Hz
    hz_per_bin = 8000 / 400
    areas = bank.sum(axis=1) * hz_per_bin
    assert np.allclose(areas[10:], 1.0, atol=0.08)
    # below 1 kHz the mel scale is linear: centres equally spaced in Hz
    centres = bank.argmax(axis=1)[:12] * hz_per_bin
    steps = np.diff(centres)
    assert steps.max() - steps.min() <= hz_per_bin * 1.01


def test_sine_peaks_in_the_right_mel_bin():
    t = np.arange(16_000) / 16_000
    mel = audio.mel_spectrogram(np.sin(2 * np.pi * 440 * t).astype(np.float32) * 0.5)
    peak_bin = int(np.median(mel[5:-5].argmax(axis=1)))
    assert audio.mel_filterbank()[:, 440 // 20].argmax() == peak_bin


def test_silence_is_the_floor():
    mel = audio.mel_spectrogram(np.zeros(6400, dtype=np.float32))
    assert np.all(mel == -4.0)


@pytest.mark.parametrize("n", [0, 639])
def test_less_than_one_frame_gives_no_window(n):
    assert audio.mel_windows(np.zeros(n, dtype=np.float32)).shape[0] == 0
