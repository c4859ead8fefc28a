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
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import ModelUnavailable
from backend.pipelines.language.common import LanguageDetector, language_codes, read_lang_to_id

logger = logging.getLogger(__name__)


def fetch_hint(source: str) -> str:
    return (f"fetch it once with `huggingface-cli download {source}` (unset HF_HUB_OFFLINE while doing so), "
            "or set WHISPER_MODEL to a local folder holding config.json, model.safetensors and generation_config.json")


def detach_from_checkpoint_file(model) -> None:
    """Copy the tensors still backed by the mmap'd safetensors file into memory of their own.

    After quantisation most weights are new int8 copies, but the few fp32 tensors left (convs,
    norms, positions) keep the whole file mapped, and the pages quantize_dynamic read stay
    resident (~77 MB for whisper-tiny, measured): copying the small rest lets the mapping go.
    """
    import torch

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.clone()
        for module in model.modules():
            # A dynamically quantised Linear keeps the original fp32 bias (a view into the file)
            # inside its packed params, out of reach of parameters().
            if hasattr(module, "_weight_bias") and hasattr(module, "set_weight_bias"):
                weight, bias = module._weight_bias()
                module.set_weight_bias(weight, None if bias is None else bias.detach().clone())


def bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def quantize_int8(module: Any) -> Any:
    """Dynamic int8 quantisation of every Linear, in place (no second fp32 copy during the conversion)."""
    import torch

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which this project does not ship.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\.")
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
        return torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


class WhisperTorchPipeline(LanguageDetector):
    """whisper-* from WHISPER_MODEL (hub id or folder) on torch."""

    backend = "torch"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.model = None
        self.extractor = None
        self.start_embedding = None
        self.dtype = "float32"
        self.quantized = False

    def load(self) -> None:
        import torch
        from transformers import GenerationConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

        source = self.model_id
        if looks_local(source) and not Path(source).is_dir():
            raise ModelUnavailable(f"WHISPER_MODEL folder {source} does not exist; " + fetch_hint("openai/whisper-tiny"),
                                   model=self.name)
        try:
            model = WhisperForConditionalGeneration.from_pretrained(source, dtype=torch.float32).eval()
        except OSError as exc:
            raise ModelUnavailable(f"whisper weights for {source!r} are not available ({exc}); {fetch_hint(source)}",
                                   model=self.name) from exc
        try:
            generation = GenerationConfig.from_pretrained(source)
        except OSError:  # no generation_config.json: whatever the model config carried
            generation = model.generation_config
        local = Path(source) if Path(source).is_dir() else None
        try:
            self.languages, token_ids = language_codes(read_lang_to_id(local, generation))
        except ValueError as exc:
            raise ModelUnavailable(f"{source}: {exc}; use a multilingual checkpoint such as openai/whisper-tiny",
                                   model=self.name) from exc
        start_id = int(generation.decoder_start_token_id or model.config.decoder_start_token_id)
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

        if self.settings.use_int8_quantization:
            # Encoder and decoder Linear layers; the language head stays fp32 (it is tiny and decides).
            model.model = quantize_int8(model.model)
            detach_from_checkpoint_file(model)
            self.quantized = True
            if self.settings.model_dtype == "bfloat16":
                logger.warning("USE_INT8_QUANTIZATION wins over MODEL_DTYPE=bfloat16 for whisper")
        elif self.settings.model_dtype == "bfloat16":
            if bf16_supported():
                model = model.to(torch.bfloat16)
                self.start_embedding = self.start_embedding.to(torch.bfloat16)
                self.dtype = "bfloat16"
            else:
                logger.warning("MODEL_DTYPE=bfloat16 but this CPU has no bf16 support: whisper stays float32")
        self.model = model
        logger.info("whisper %s loaded: %d languages, dtype=%s, int8=%s", source, len(self.languages),
                    self.dtype, self.quantized)

    def features(self, window: np.ndarray) -> np.ndarray:
        assert self.extractor is not None
        return self.extractor(window, sampling_rate=16000, return_tensors="np").input_features[0]

    def language_logits(self, features: np.ndarray) -> np.ndarray:
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


def looks_local(source: str) -> bool:
    """A model source meant as a local folder rather than a Hugging Face id."""
    return source.startswith((".", "/", "~")) or Path(source).exists() or source.count("/") > 1
