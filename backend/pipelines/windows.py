"""Audio cut into fixed-length windows for classifiers that see one length: the shared half of
language detection (Whisper, 30 s windows back to back) and AI-voice detection (AST, ~10 s
windows overlapping by half).

A WindowedClassifier's preprocess cuts the audio into at most `max_windows` windows (spread
evenly over long audio, the last one flush with the end so none is mostly padding) with one
feature matrix each; run calls the model once per window and nothing else; the family's
postprocess turns the [windows, classes] logits into its answer.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from backend.audio.features import SAMPLE_RATE_HZ
from backend.pipelines.base import Pipeline


def window_starts(n_samples: int, window: int, max_windows: int, hop: int | None = None) -> list[int]:
    """Start offsets of windows covering n_samples: back to back (or every hop), the last one
    flush with the end so no window is mostly padding; at most max_windows, spread evenly."""
    hop = hop or window
    if n_samples <= window:
        return [0]
    last = n_samples - window
    count = -(-last // hop) + 1  # ceil(last / hop) + 1
    if count > max_windows:
        return [round(x) for x in np.linspace(0, last, max_windows)]
    return [min(i * hop, last) for i in range(count)]


def covered_samples(starts: list[int], window: int, n_samples: int) -> int:
    """Samples inside at least one window (the union of [start, start+window))."""
    covered, reach = 0, 0
    for start in sorted(starts):
        end = min(start + window, n_samples)
        covered += max(0, end - max(start, reach))
        reach = max(reach, end)
    return covered


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


@dataclass
class Windows:
    """What run() needs: one feature matrix per window, and how much of the audio they cover."""

    features: list[np.ndarray]
    seconds_analysed: float


@dataclass
class WindowLogits:
    """What run() returns: [windows, classes] logits, with the windows they came from."""

    logits: np.ndarray
    windows: Windows


class WindowedClassifier(Pipeline):
    """A classifier over fixed-length windows of 16 kHz mono audio; subclasses provide features and logits."""

    #: longer audio is covered by this many windows spread evenly (bounds latency; seconds_analysed says so)
    max_windows: int = 1

    @property
    @abstractmethod
    def window_samples(self) -> int:
        """Samples the model sees at once."""

    @property
    def hop_samples(self) -> int | None:
        """Samples between window starts; None = back to back."""
        return None

    @abstractmethod
    def features(self, window: np.ndarray) -> np.ndarray:
        """The model input of one window of 16 kHz mono float32 audio."""

    @abstractmethod
    def logits(self, features: np.ndarray) -> np.ndarray:
        """[classes] logits of one window."""

    def cut(self, audio: np.ndarray) -> tuple[list[np.ndarray], float]:
        """One feature matrix per window of analysable audio, and the seconds the windows cover."""
        window = self.window_samples
        starts = window_starts(audio.size, window, self.max_windows, hop=self.hop_samples)
        features = [self.features(audio[start:start + window]) for start in starts]
        return features, covered_samples(starts, window, audio.size) / SAMPLE_RATE_HZ

    def run(self, features: Windows) -> WindowLogits:
        logits = np.stack([np.asarray(self.logits(f), dtype=np.float32).reshape(-1) for f in features.features])
        return WindowLogits(logits=logits, windows=features)
