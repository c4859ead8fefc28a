"""AST AI-generated-voice detection on torch + transformers (ASTForAudioClassification + ASTFeatureExtractor)."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import ModelUnavailable
from backend.pipelines.ai_voice.common import AIVoiceDetector
from backend.pipelines.language.whisper_torch import bf16_supported, detach_from_checkpoint_file, looks_local, quantize_int8

logger = logging.getLogger(__name__)


def fetch_hint(source: str) -> str:
    return (f"fetch it once with `huggingface-cli download {source}` (unset HF_HUB_OFFLINE while doing so), "
            "or set AI_VOICE_MODEL to a local folder holding config.json, model.safetensors and preprocessor_config.json")


class ASTTorchPipeline(AIVoiceDetector):
    """An AST audio classifier from AI_VOICE_MODEL (hub id or folder) on torch."""

    backend = "torch"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.model = None
        self.extractor = None
        self.dtype = "float32"
        self.quantized = False

    def load(self) -> None:
        import torch
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        source = self.model_id
        if looks_local(source) and not Path(source).is_dir():
            raise ModelUnavailable(f"AI_VOICE_MODEL folder {source} does not exist; "
                                   + fetch_hint("MattyB95/AST-ASVspoof2019-Synthetic-Voice-Detection"), model=self.name)
        try:
            model = ASTForAudioClassification.from_pretrained(source, dtype=torch.float32).eval()
        except OSError as exc:
            raise ModelUnavailable(f"AST weights for {source!r} are not available ({exc}); {fetch_hint(source)}",
                                   model=self.name) from exc
        config = model.config
        self.configure(config.id2label, max_length=config.max_length, problem_type=config.problem_type)
        with warnings.catch_warnings():
            # transformers' numpy filterbank warns that 128 Kaldi mel bins over 257 FFT bins leave
            # one filter empty; the published models were trained with exactly that filterbank.
            warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
            try:
                self.extractor = ASTFeatureExtractor.from_pretrained(source)
            except OSError:  # no preprocessor_config.json: the model config gives its shape
                self.extractor = ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length)
        if self.settings.use_int8_quantization:
            model = quantize_int8(model)
            detach_from_checkpoint_file(model)  # else the file stays mapped and its read pages resident
            self.quantized = True
            if self.settings.model_dtype == "bfloat16":
                logger.warning("USE_INT8_QUANTIZATION wins over MODEL_DTYPE=bfloat16 for AST")
        elif self.settings.model_dtype == "bfloat16":
            if bf16_supported():
                model = model.to(torch.bfloat16)
                self.dtype = "bfloat16"
            else:
                logger.warning("MODEL_DTYPE=bfloat16 but this CPU has no bf16 support: AST stays float32")
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
