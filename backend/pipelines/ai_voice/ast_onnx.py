"""AST AI-voice detection on ONNX Runtime: numpy Kaldi-style filterbank + one exported graph, no torch.

Loads ONNX_DIR/ast/{model.onnx, meta.json} written by scripts/fetch_models.py (scripts/export_onnx.py); meta.json holds
id2label, the problem type and the feature-extractor parameters, so no transformers config
class is read at run time.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from backend.audio.features import ast_fbank
from backend.pipelines.ai_voice.detector import AIVoiceDetector
from backend.pipelines.onnx_session import (
    exported_availability,
    exported_model_or_unavailable,
    make_run_options,
    make_session,
)


class ASTOnnxPipeline(AIVoiceDetector):
    backend = "onnx"
    runtime = ("onnxruntime",)

    @classmethod
    def find_files(cls, settings):
        return exported_availability(settings, "ast", cls.name)

    def load(self) -> None:
        path, meta = exported_model_or_unavailable(self.settings, "ast", self.name)
        params = meta["features"]
        self.configure({int(k): v for k, v in meta["id2label"].items()}, max_length=int(params["max_length"]),
                       problem_type=meta.get("problem_type"))
        self.session = make_session(path, self.settings, fixed_shapes=True)
        self._run_options = make_run_options(self.settings)
        self.model_id = str(meta.get("source", self.model_id))
        self.precision = str(meta.get("precision", "fp32"))
        self.feature_params = params
        self.input_name, self.output_name = meta["input"], meta["output"]

    def features(self, window: np.ndarray) -> np.ndarray:
        p = self.feature_params
        return ast_fbank(window, int(p["num_mel_bins"]), int(p["max_length"]), normalize=bool(p["do_normalize"]),
                         mean=float(p["mean"]), std=float(p["std"]))

    def logits(self, features: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: features[None].astype(np.float32)},
                                self._run_options)[0][0]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "precision": getattr(self, "precision", None)}
