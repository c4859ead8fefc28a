"""SadTalker's audio features: 16 kHz mono -> one 80x16 mel window per 25 fps video frame.

Exactly the reference's Wav2Lip recipe (PITFALLS.md 1-4): truncate to whole frames, pre-emphasis
0.97, centred zero-padded STFT (n_fft 800, hop 200, periodic Hann), magnitude, Slaney mel
(80 bins, 55-7600 Hz, Slaney area norm), 20 log10 - 20 dB, symmetric clip to [-4, 4]; window i
starts at trunc(16 (i - 2) / 5) mel frames (toward zero) and is clamped to the spectrogram.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE_HZ = 16_000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE_HZ // FPS  # 640
N_FFT = 800
HOP = 200
N_MELS = 80
FMIN_HZ = 55.0
FMAX_HZ = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS = 4.0
WINDOW_MEL_FRAMES = 16


def frame_count(n_samples: int) -> int:
    """Video frames for this much audio at 25 fps (whole frames only)."""
    return n_samples // SAMPLES_PER_FRAME


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_step = np.log(6.4) / 27.0
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * (200.0 / 3))


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(80, 401) Slaney-scale, Slaney-normalised triangles (librosa.filters.mel defaults), float32."""
    fft_hz = np.linspace(0, SAMPLE_RATE_HZ / 2, 1 + N_FFT // 2)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(FMIN_HZ), _hz_to_mel(FMAX_HZ), N_MELS + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def mel_spectrogram(samples: np.ndarray) -> np.ndarray:
    """(T_mel, 80) normalised log-mel of whole-frame-truncated 16 kHz audio, T_mel = 1 + len // 200."""
    x = np.asarray(samples, dtype=np.float64)
    emphasised = np.empty_like(x)
    emphasised[:1] = x[:1]
    emphasised[1:] = x[1:] - PREEMPHASIS * x[:-1]
    padded = np.pad(emphasised, N_FFT // 2)  # center=True with zero padding (librosa >= 0.9)
    n_frames = 1 + (padded.size - N_FFT) // HOP
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    frames = np.lib.stride_tricks.as_strided(padded, (n_frames, N_FFT), (padded.strides[0] * HOP, padded.strides[0]))
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1))  # (T_mel, 401)
    mel = magnitude @ mel_filterbank().T.astype(np.float64)
    db = 20 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    return np.clip(2 * MAX_ABS * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS, -MAX_ABS, MAX_ABS).astype(np.float32)


def window_start(frame: int) -> int:
    """int(80 * ((frame - 2) / 25)) in exact integer arithmetic: truncates toward zero (-6, -3, 0, 3, 6, ...)."""
    numerator = WINDOW_MEL_FRAMES * (frame - 2)
    return numerator // 5 if numerator >= 0 else -((-numerator) // 5)


def mel_windows(samples: np.ndarray) -> np.ndarray:
    """(T, 80, 16) float32: one mel window per video frame, T = len // 640."""
    frames = frame_count(len(samples))
    mel = mel_spectrogram(np.asarray(samples)[:frames * SAMPLES_PER_FRAME])
    starts = np.array([window_start(i) for i in range(frames)], dtype=np.int64)
    index = np.clip(starts[:, None] + np.arange(WINDOW_MEL_FRAMES)[None, :], 0, mel.shape[0] - 1)
    return np.ascontiguousarray(mel[index].transpose(0, 2, 1))
