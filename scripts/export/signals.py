"""Deterministic test audio for parity checks: voiced-like harmonics, a chirp, noise, near silence."""
from __future__ import annotations

import numpy as np

from backend.audio.features import SAMPLE_RATE_HZ


def parity_signals(seconds: float, count: int = 4, seed: int = 0) -> list[np.ndarray]:
    """`count` float32 16 kHz signals of `seconds`, different in kind so classifiers see varied inputs."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    signals = []
    for index in range(count):
        kind = index % 4
        if kind == 0:  # harmonics of a gliding pitch, syllable-rate amplitude modulation
            f0 = 110 + 40 * np.sin(2 * np.pi * 0.7 * t) + rng.uniform(0, 60)
            phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE_HZ
            wave = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
        elif kind == 1:  # chirp
            wave = np.sin(2 * np.pi * (100 + 3000 * t / max(seconds, 1e-3)) * t)
        elif kind == 2:  # white noise
            wave = rng.standard_normal(t.size)
        else:  # near silence with a click
            wave = 1e-4 * rng.standard_normal(t.size)
            wave[t.size // 2] = 0.5
        wave = wave / (np.abs(wave).max() + 1e-9) * rng.uniform(0.2, 0.9)
        signals.append(wave.astype(np.float32))
    return signals
