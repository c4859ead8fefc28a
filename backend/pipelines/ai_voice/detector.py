"""AI-generated-voice detection, independent of the backend: windows, label choice, scores.

A backend (ast_torch, ast_onnx) subclasses AIVoiceDetector; its load() calls
`self.configure(id2label, max_length=..., problem_type=...)` with the checkpoint's labels
({int: str}), frames per window (1024 = 10.24 s) and problem type (may be None). It implements:

    features(window: float32 16 kHz, <= window_samples) -> np.ndarray [max_length, n_mels]
    logits(features)                                     -> np.ndarray [len(id2label)]

Windows (the model's length, overlapping by half, at most 24) come from backend.pipelines.windows.

Synthetic labels come from AI_VOICE_LABELS, else from id2label (exact names such as "spoof",
"fake", "Speech synthesizer", then names containing spoof/fake/synthetic/deepfake/generated).
Multi-label checkpoints (AudioSet taggers) are scored with a sigmoid (max over the synthetic
labels), single-label ones with a softmax (sum over the synthetic labels).

Request: {"audio": np.ndarray float32 mono 16 kHz}
Result:
    {"score": 0.87, "score_mean": 0.87, "score_max": 0.95, "threshold": 0.5, "is_ai_generated": True,
     "aggregation": "mean", "activation": "softmax", "synthetic_labels": ["spoof"],
     "window_scores": [...], "windows": 3, "window_s": 10.255, "hop_s": 5.128,
     "seconds_analysed": 20.5, "model": "...", "backend": "torch"}
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from backend.audio.decode import require_analysable
from backend.audio.features import AST_FRAME, AST_HOP, SAMPLE_RATE_HZ
from backend.errors import ModelUnavailable
from backend.pipelines.base import public_model_name
from backend.pipelines.windows import WindowedClassifier, WindowLogits, Windows, softmax
from config import Settings

logger = logging.getLogger(__name__)

# Said in /api/models: unlike language detection (whisper-base, measured in docs/BENCHMARKS.md), no real AST
# weights exist offline, so this project has never measured how often the detector is right.
ACCURACY = ("not measured by this project: no real AST weights are available offline (its tests use tiny "
            "random checkpoints); judge the configured AI_VOICE_MODEL on your own data")
MAX_WINDOWS = 24  # longer audio: windows spread evenly over it (bounds latency; seconds_analysed says so)
HOP_FRACTION = 0.5  # windows overlap by half
MULTI_LABEL_MIN_CLASSES = 100  # a classifier this wide without a problem_type is an AudioSet-style tagger
EXACT_SYNTHETIC = {"spoof", "spoofed", "fake", "synthetic", "ai", "ai_generated", "ai-generated", "generated",
                   "deepfake", "speech synthesizer", "tts"}
SYNTHETIC_PATTERN = re.compile(r"spoof|fake|synthetic|deepfake|generated", re.IGNORECASE)


def synthetic_labels(id2label: Mapping[int, str], configured: list[str] | None = None) -> list[str]:
    """The labels that mean 'synthetic': configured ones (checked), else chosen from id2label.

    Raises:
        ValueError: a configured label is not in id2label, or none can be chosen.
    """
    names = [str(name) for _, name in sorted(id2label.items())]
    if configured:
        lower = {name.lower(): name for name in names}
        missing = [label for label in configured if label.lower() not in lower]
        if missing:
            raise ValueError(f"AI_VOICE_LABELS names {', '.join(missing)} not among the model's labels: "
                             f"{_preview(names)}")
        return [lower[label.lower()] for label in configured]
    chosen = [name for name in names if name.strip().lower() in EXACT_SYNTHETIC]
    if not chosen:
        chosen = [name for name in names if SYNTHETIC_PATTERN.search(name)]
    if not chosen or len(chosen) == len(names):
        raise ValueError("cannot tell which of the model's labels mean 'synthetic'; set AI_VOICE_LABELS to some of: "
                         f"{_preview(names)}")
    return chosen


def _preview(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names)} labels)" if len(names) > limit else "")


def window_samples_for(max_length: int) -> int:
    """Samples that fill exactly max_length Kaldi frames (25 ms every 10 ms)."""
    return AST_FRAME + (max_length - 1) * AST_HOP


class AIVoiceDetector(WindowedClassifier):
    """AST-style classifier over overlapping ~10 s windows; subclasses provide features and logits."""

    name = "ai_voice"
    max_windows = MAX_WINDOWS

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_id: str = settings.ai_voice_model
        self.threshold: float = settings.ai_voice_threshold
        self.id2label: dict[int, str] = {}
        self.problem_type: str | None = None
        self.max_length: int = 1024
        self.multi_label = False
        self.synthetic_labels: list[str] = []
        self._synthetic_index: list[int] = []

    def configure(self, id2label: Mapping[int | str, str], *, max_length: int, problem_type: str | None = None) -> None:
        """Take the checkpoint's labels and window length; choose the synthetic labels and the activation.

        Raises:
            ModelUnavailable: AI_VOICE_LABELS names unknown labels, or none can be chosen.
        """
        self.id2label = {int(index): str(label) for index, label in id2label.items()}
        self.max_length = int(max_length)
        self.problem_type = problem_type or None
        try:
            self.synthetic_labels = synthetic_labels(self.id2label, self.settings.ai_voice_labels)
        except ValueError as exc:
            raise ModelUnavailable(f"AI-voice model {self.model_id}: {exc}", model=self.name) from exc
        by_name = {name: index for index, name in self.id2label.items()}
        self._synthetic_index = [int(by_name[label]) for label in self.synthetic_labels]
        if self.problem_type:
            self.multi_label = self.problem_type == "multi_label_classification"
        else:
            self.multi_label = len(self.id2label) >= MULTI_LABEL_MIN_CLASSES

    @property
    def window_samples(self) -> int:
        return window_samples_for(self.max_length)

    @property
    def hop_samples(self) -> int:
        return max(1, int(self.window_samples * HOP_FRACTION))

    # --- pipeline contract ---------------------------------------------------------------
    def preprocess(self, request: Mapping[str, Any]) -> Windows:
        """The audio checked (400 / 422 before any model call), then the windows' features."""
        audio = require_analysable(request.get("audio"))
        return Windows(*self.cut(audio))

    def postprocess(self, raw: WindowLogits) -> dict[str, Any]:
        logits = raw.logits.astype(np.float64)
        if self.multi_label:
            probabilities = 1.0 / (1.0 + np.exp(-logits))
            per_window = probabilities[:, self._synthetic_index].max(axis=1)
        else:
            per_window = softmax(logits, axis=-1)[:, self._synthetic_index].sum(axis=1)
        per_window = np.clip(per_window, 0.0, 1.0)
        mean, peak = float(per_window.mean()), float(per_window.max())
        score = mean
        return {
            "score": round(score, 6), "score_mean": round(mean, 6), "score_max": round(peak, 6),
            "threshold": self.threshold, "is_ai_generated": bool(score >= self.threshold), "aggregation": "mean",
            "activation": "sigmoid" if self.multi_label else "softmax", "synthetic_labels": self.synthetic_labels,
            "window_scores": [round(float(s), 6) for s in per_window], "windows": int(per_window.size),
            "window_s": round(self.window_samples / SAMPLE_RATE_HZ, 3),
            "hop_s": round(self.hop_samples / SAMPLE_RATE_HZ, 3),
            "seconds_analysed": round(raw.windows.seconds_analysed, 3), "model": self.model_id, "backend": self.backend,
        }

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model_id, "model_name": public_model_name(self.model_id),
                "accuracy": ACCURACY, "synthetic_labels": self.synthetic_labels,
                "activation": "sigmoid" if self.multi_label else "softmax", "window_frames": self.max_length}
