"""Whisper language detection on ONNX Runtime: numpy log-mel + one exported graph, no torch.

Loads ONNX_DIR/whisper/{model.onnx, meta.json} written by scripts/fetch_models.py (scripts/export_onnx.py): the graph is
the encoder plus the first decoder step, returning logits over the language tokens only, in
the order of meta.json's "languages" (token-id order, as the torch backend's).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from backend.audio.features import whisper_log_mel
from backend.pipelines.language.detector import LanguageDetector
from backend.pipelines.onnx_session import (
    exported_availability,
    exported_model_or_unavailable,
    make_run_options,
    make_session,
)


class WhisperOnnxPipeline(LanguageDetector):
    backend = "onnx"
    runtime = ("onnxruntime",)

    @classmethod
    def find_files(cls, settings):
        return exported_availability(settings, "whisper", cls.name)

    def load(self) -> None:
        path, meta = exported_model_or_unavailable(self.settings, "whisper", self.name)
        self.session = make_session(path, self.settings, fixed_shapes=True)
        self._run_options = make_run_options(self.settings)
        self.languages = list(meta["languages"])
        self.model_id = str(meta.get("source", self.model_id))
        self.precision = str(meta.get("precision", "fp32"))
        self.n_mels = int(meta["features"]["n_mels"])
        self.input_name, self.output_name = meta["input"], meta["output"]

    def features(self, window: np.ndarray) -> np.ndarray:
        return whisper_log_mel(window, n_mels=self.n_mels)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: features[None].astype(np.float32)},
                                self._run_options)[0][0]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "precision": getattr(self, "precision", None)}
