"""AST AI-generated-voice detection on torch + transformers (ASTForAudioClassification + ASTFeatureExtractor)."""
from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from backend.pipelines.ai_voice.detector import AIVoiceDetector
from backend.pipelines.base import Availability
from backend.pipelines.torch_utils import Checkpoint, apply_precision

logger = logging.getLogger(__name__)

CHECKPOINT = Checkpoint(label="AST", setting="AI_VOICE_MODEL",
                        default="MattyB95/AST-ASVspoof2019-Synthetic-Voice-Detection",
                        files="config.json, model.safetensors and preprocessor_config.json")


def feature_extractor(source: str | None = None, **params: Any) -> Any:
    """transformers' ASTFeatureExtractor from `source` (a folder or hub id), else built from params.

    Its numpy filterbank warns that 128 Kaldi mel bins over 257 FFT bins leave one filter empty;
    the published models were trained with exactly that filterbank, so the warning is dropped.
    """
    from transformers import ASTFeatureExtractor

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        return ASTFeatureExtractor.from_pretrained(source) if source else ASTFeatureExtractor(**params)


class ASTTorchPipeline(AIVoiceDetector):
    """An AST audio classifier from AI_VOICE_MODEL (hub id or folder) on torch."""

    backend = "torch"
    runtime = ("torch", "transformers.modeling_utils", "transformers.models.audio_spectrogram_transformer.modeling_audio_spectrogram_transformer")

    @classmethod
    def find_files(cls, settings: Any) -> Availability:
        return CHECKPOINT.find_files(settings.ai_voice_model, cls.name, settings)

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.model = None
        self.extractor = None
        self.dtype = "float32"
        self.quantized = False

    def load(self) -> None:
        from transformers import ASTForAudioClassification

        source = self.model_id
        model = CHECKPOINT.load(ASTForAudioClassification, source, self.name)
        config = model.config
        self.configure(config.id2label, max_length=config.max_length, problem_type=config.problem_type)
        try:
            self.extractor = feature_extractor(source)
        except OSError:  # no preprocessor_config.json: the model config gives its shape
            self.extractor = feature_extractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length)
        model, self.dtype, self.quantized = apply_precision(model, self.settings, "AST")
        self.model = model
        logger.info("AST %s loaded: synthetic labels %s (%s), %d frames, dtype=%s, int8=%s", source,
                    self.synthetic_labels, "sigmoid" if self.multi_label else "softmax", self.max_length,
                    self.dtype, self.quantized)

    def features(self, window: np.ndarray) -> np.ndarray:
        assert self.extractor is not None
        return self.extractor(window, sampling_rate=16000, return_tensors="np")["input_values"][0]

    def logits(self, features: np.ndarray) -> np.ndarray:
        import torch

        assert self.model is not None
        dtype = torch.bfloat16 if self.dtype == "bfloat16" else torch.float32
        with torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(features)).unsqueeze(0).to(dtype)
            return self.model(input_values=inputs).logits[0].float().numpy()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dtype": self.dtype, "int8": self.quantized}
