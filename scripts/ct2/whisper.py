"""CTranslate2 WhisperSpec (revision 3) -> Hugging Face `WhisperForConditionalGeneration` names and configs.

The inverse of CTranslate2's transformers converter (`WhisperLoader`, built on `BartLoader`):

    CTranslate2                                   transformers (model.*)
    {enc,dec}/layer_N/self_attention/linear_0     self_attn.{q,k,v}_proj: q, k, v stacked on rows
    {enc,dec}/layer_N/self_attention/linear_1     self_attn.out_proj
    decoder/layer_N/attention/linear_0            encoder_attn.q_proj
    decoder/layer_N/attention/linear_1            encoder_attn.{k,v}_proj: k, v stacked on rows
    decoder/layer_N/attention/linear_2            encoder_attn.out_proj
    */layer_norm/{gamma,beta}                     *_layer_norm.{weight,bias}
    */ffn/linear_{0,1}                            fc1, fc2 (ffn/layer_norm = final_layer_norm)
    encoder/conv{1,2}, */position_encodings       conv{1,2}, embed_positions
    decoder/embeddings                            decoder.embed_tokens (proj_out is an alias: tied)

k_proj has no bias in transformers; CTranslate2 stores zeros in its slot of the fused bias.
Dropping that slot is exact even if it were not zero: q.(k + b) shifts every key's score for a
query by the same q.b, which the softmax cancels.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from scripts.ct2.binary import Ct2FormatError, Ct2Model

SPEC_NAME = "WhisperSpec"
SPEC_REVISION = 3
GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU
# Scalars the decoder spec records; a Whisper checkpoint has exactly these values.
EXPECTED_DECODER_FLAGS = {"decoder/activation": GELU, "decoder/pre_norm": 1, "decoder/scale_embeddings": 0,
                          "decoder/alibi": 0, "decoder/start_from_zero_embedding": 0}
# Scalars that carry no weight (alignment heads live in config.json, heads are read separately).
IGNORED_SCALARS = {"decoder/alignment_heads", "decoder/alignment_layer", "decoder/num_heads", "encoder/num_heads"}

_LAYER_RE = re.compile(r"^(encoder|decoder)/layer_(\d+)/")
_SPECIAL_TOKENS = ("<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
                   "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>")


def check_spec(model: Ct2Model) -> None:
    """Refuse anything but a Whisper spec this mapping was written for (names the difference)."""
    if model.spec != SPEC_NAME or model.revision != SPEC_REVISION:
        raise Ct2FormatError(f"model.bin holds {model.spec} revision {model.revision}; this converter maps "
                             f"{SPEC_NAME} revision {SPEC_REVISION}")
    for name, expected in EXPECTED_DECODER_FLAGS.items():
        if name in model.variables and model.scalar(name) != expected:
            raise Ct2FormatError(f"{name} is {model.scalar(name)}, Whisper has {expected}")


def layer_count(model: Ct2Model, stack: str) -> int:
    indices = {int(m.group(2)) for name in model.variables if (m := _LAYER_RE.match(name)) and m.group(1) == stack}
    if indices != set(range(len(indices))):
        raise Ct2FormatError(f"{stack} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def state_dict(model: Ct2Model) -> dict[str, np.ndarray]:
    """transformers tensor name -> array, for every weight of the CT2 model (each used once).

    The arrays are views into the file in its stored dtype (float16 here; bfloat16 as uint16):
    the writer converts one tensor at a time (`as_float32`), so the whole fp32 model is never
    in memory at once.
    """
    check_spec(model)
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(model.aliases.get(name, name))
        return model.get(name)

    def split(name: str, parts: int) -> list[np.ndarray]:
        array = take(name)
        if array.shape[0] % parts:
            raise Ct2FormatError(f"{name} has {array.shape[0]} rows, not divisible into {parts}")
        return np.split(array, parts, axis=0)

    out: dict[str, np.ndarray] = {}

    def linear(target: str, source: str) -> None:
        out[f"{target}.weight"] = take(f"{source}/weight")
        out[f"{target}.bias"] = take(f"{source}/bias")

    def norm(target: str, source: str) -> None:
        out[f"{target}.weight"] = take(f"{source}/gamma")
        out[f"{target}.bias"] = take(f"{source}/beta")

    def self_attention(target: str, source: str) -> None:
        q_w, k_w, v_w = split(f"{source}/linear_0/weight", 3)
        q_b, _k_b, v_b = split(f"{source}/linear_0/bias", 3)  # k has no bias in transformers (see module doc)
        out.update({f"{target}.q_proj.weight": q_w, f"{target}.q_proj.bias": q_b, f"{target}.k_proj.weight": k_w,
                    f"{target}.v_proj.weight": v_w, f"{target}.v_proj.bias": v_b})
        linear(f"{target}.out_proj", f"{source}/linear_1")

    def cross_attention(target: str, source: str) -> None:
        linear(f"{target}.q_proj", f"{source}/linear_0")
        k_w, v_w = split(f"{source}/linear_1/weight", 2)
        _k_b, v_b = split(f"{source}/linear_1/bias", 2)
        out.update({f"{target}.k_proj.weight": k_w, f"{target}.v_proj.weight": v_w, f"{target}.v_proj.bias": v_b})
        linear(f"{target}.out_proj", f"{source}/linear_2")

    def feed_forward(target: str, source: str) -> None:
        norm(f"{target}.final_layer_norm", f"{source}/ffn/layer_norm")
        linear(f"{target}.fc1", f"{source}/ffn/linear_0")
        linear(f"{target}.fc2", f"{source}/ffn/linear_1")

    linear("model.encoder.conv1", "encoder/conv1")
    linear("model.encoder.conv2", "encoder/conv2")
    out["model.encoder.embed_positions.weight"] = take("encoder/position_encodings/encodings")
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    for i in range(layer_count(model, "encoder")):
        source, target = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        norm(f"{target}.self_attn_layer_norm", f"{source}/self_attention/layer_norm")
        self_attention(f"{target}.self_attn", f"{source}/self_attention")
        feed_forward(target, source)

    out["model.decoder.embed_tokens.weight"] = take("decoder/embeddings/weight")
    out["model.decoder.embed_positions.weight"] = take("decoder/position_encodings/encodings")
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for i in range(layer_count(model, "decoder")):
        source, target = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        norm(f"{target}.self_attn_layer_norm", f"{source}/self_attention/layer_norm")
        self_attention(f"{target}.self_attn", f"{source}/self_attention")
        norm(f"{target}.encoder_attn_layer_norm", f"{source}/attention/layer_norm")
        cross_attention(f"{target}.encoder_attn", f"{source}/attention")
        feed_forward(target, source)

    projection = model.aliases.get("decoder/projection/weight")
    if projection != "decoder/embeddings/weight":
        # transformers' Whisper always ties proj_out to embed_tokens: an untied head has no place.
        raise Ct2FormatError("decoder/projection/weight is not an alias of decoder/embeddings/weight")
    if "decoder/projection/bias" in model.variables:
        raise Ct2FormatError("decoder/projection has a bias; transformers' Whisper head has none")
    left = sorted(name for name, array in model.variables.items()
                  if name not in used and name not in IGNORED_SCALARS and name not in EXPECTED_DECODER_FLAGS)
    if left:
        raise Ct2FormatError(f"{len(left)} variable(s) this mapping does not know, first {left[0]!r}")
    return out


def special_token_ids(tokenizer: Mapping[str, Any]) -> dict[str, int]:
    """Added tokens of a tokenizer.json: {"<|endoftext|>": 50257, "<|en|>": 50259, ...}."""
    return {token["content"]: int(token["id"]) for token in tokenizer.get("added_tokens", [])}


def language_tokens(ct2_config: Mapping[str, Any], tokens: Mapping[str, int]) -> dict[str, int]:
    """lang_to_id in token order, from CT2 config's lang_ids and the tokenizer's names for them."""
    names = {token_id: token for token, token_id in tokens.items()}
    lang_ids = [int(i) for i in ct2_config.get("lang_ids") or []]
    if not lang_ids:
        raise Ct2FormatError("config.json has no lang_ids: not a multilingual Whisper")
    unnamed = [i for i in lang_ids if i not in names or names[i] in _SPECIAL_TOKENS]
    if unnamed:
        raise Ct2FormatError(f"language token id {unnamed[0]} has no language token in tokenizer.json")
    return {names[i]: i for i in sorted(lang_ids)}


def model_config(model: Ct2Model, tokens: Mapping[str, int]) -> dict[str, Any]:
    """config.json of WhisperForConditionalGeneration, every size read from the arrays."""
    embeddings = model.get("decoder/embeddings/weight")
    conv1 = model.get("encoder/conv1/weight")
    end_of_text, start = tokens["<|endoftext|>"], tokens["<|startoftranscript|>"]
    return {
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper", "dtype": "float32",
        "vocab_size": int(embeddings.shape[0]), "d_model": int(embeddings.shape[1]),
        "num_mel_bins": int(conv1.shape[1]),
        "encoder_layers": layer_count(model, "encoder"), "decoder_layers": layer_count(model, "decoder"),
        "encoder_attention_heads": int(model.scalar("encoder/num_heads")),
        "decoder_attention_heads": int(model.scalar("decoder/num_heads")),
        "encoder_ffn_dim": int(model.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        "decoder_ffn_dim": int(model.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        "max_source_positions": int(model.get("encoder/position_encodings/encodings").shape[0]),
        "max_target_positions": int(model.get("decoder/position_encodings/encodings").shape[0]),
        "activation_function": "gelu", "scale_embedding": False, "tie_word_embeddings": True,
        "bos_token_id": end_of_text, "eos_token_id": end_of_text, "pad_token_id": end_of_text,
        "decoder_start_token_id": start, "use_cache": True,
    }


def generation_config(ct2_config: Mapping[str, Any], tokens: Mapping[str, int], max_length: int) -> dict[str, Any]:
    """generation_config.json as openai's multilingual checkpoints publish it (lang_to_id, task ids, suppression)."""
    end_of_text = tokens["<|endoftext|>"]
    heads = ct2_config.get("alignment_heads")
    config: dict[str, Any] = {
        "bos_token_id": end_of_text, "eos_token_id": end_of_text, "pad_token_id": end_of_text,
        "decoder_start_token_id": tokens["<|startoftranscript|>"],
        "is_multilingual": True, "lang_to_id": language_tokens(ct2_config, tokens),
        "task_to_id": {"transcribe": tokens["<|transcribe|>"], "translate": tokens["<|translate|>"]},
        "no_timestamps_token_id": tokens["<|notimestamps|>"], "prev_sot_token_id": tokens["<|startofprev|>"],
        "suppress_tokens": [int(i) for i in ct2_config.get("suppress_ids") or []],
        "begin_suppress_tokens": [int(i) for i in ct2_config.get("suppress_ids_begin") or []],
        "max_initial_timestamp_index": 50, "max_length": max_length, "return_timestamps": False,
    }
    if heads:
        config["alignment_heads"] = [[int(layer), int(head)] for layer, head in heads]
    return config


def preprocessor_config(n_mels: int) -> dict[str, Any]:
    """WhisperFeatureExtractor's published defaults (the packages ship none)."""
    return {
        "feature_extractor_type": "WhisperFeatureExtractor", "processor_class": "WhisperProcessor",
        "feature_size": n_mels, "sampling_rate": 16000, "hop_length": 160, "n_fft": 400, "chunk_length": 30,
        "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right", "padding_value": 0.0,
        "return_attention_mask": False, "dither": 0.0,
    }


def tokenizer_config(tokens: Mapping[str, int]) -> dict[str, Any]:
    """Enough for WhisperTokenizerFast to load tokenizer.json (decoding transcripts in tests)."""
    return {"tokenizer_class": "WhisperTokenizer", "model_max_length": 1024, "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
            "add_prefix_space": False, "errors": "replace"}
