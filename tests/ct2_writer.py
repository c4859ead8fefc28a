"""Test helper: write a transformers Whisper as a CTranslate2 WhisperSpec model.bin (forward direction).

Follows CTranslate2's own writer (`ModelSpec._serialize`: variables sorted by name, then aliases)
and its transformers loader (q/k/v fused with a zero k bias, cross-attention k/v fused, the tied
projection as an alias), so a tiny random checkpoint can go through our converter and back, and,
when ctranslate2 is installed, be loaded by CTranslate2 itself.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

import numpy as np

DTYPE_IDS = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("int32"): 3,
             np.dtype("float16"): 4}


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("<H", len(raw) + 1) + raw + b"\0"


def serialize(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], *, spec: str = "WhisperSpec",
              revision: int = 3, version: int = 6) -> None:
    blocks = [struct.pack("<I", version), _string(spec), struct.pack("<I", revision),
              struct.pack("<I", len(variables))]
    for name in sorted(variables):
        value = np.asarray(variables[name])
        value = value if value.flags.c_contiguous else value.copy()  # ascontiguousarray would make scalars 1-d
        blocks += [_string(name), struct.pack("<B", value.ndim), *(struct.pack("<I", d) for d in value.shape),
                   struct.pack("<B", DTYPE_IDS[value.dtype]), struct.pack("<I", value.nbytes), value.tobytes()]
    blocks.append(struct.pack("<I", len(aliases)))
    for alias, target in sorted(aliases.items()):
        blocks += [_string(alias), _string(target)]
    path.write_bytes(b"".join(blocks))


def ct2_variables(state: dict[str, np.ndarray], config: dict, dtype: str = "float16") -> dict[str, np.ndarray]:
    """CT2 names for a transformers Whisper state dict (float arrays cast to dtype), plus the spec scalars."""
    cast = {k: v.astype(dtype) for k, v in state.items()}
    out: dict[str, np.ndarray] = {}

    def linear(target: str, source: str, bias: bool = True) -> None:
        out[f"{target}/weight"] = cast[f"{source}.weight"]
        if bias:
            out[f"{target}/bias"] = cast[f"{source}.bias"]

    def norm(target: str, source: str) -> None:
        out[f"{target}/gamma"], out[f"{target}/beta"] = cast[f"{source}.weight"], cast[f"{source}.bias"]

    def fused(target: str, sources: list[str]) -> None:
        out[f"{target}/weight"] = np.concatenate([cast[f"{s}.weight"] for s in sources])
        out[f"{target}/bias"] = np.concatenate([cast.get(f"{s}.bias", np.zeros(cast[f"{s}.weight"].shape[0], dtype))
                                                for s in sources])

    def ffn(target: str, source: str) -> None:
        norm(f"{target}/ffn/layer_norm", f"{source}.final_layer_norm")
        linear(f"{target}/ffn/linear_0", f"{source}.fc1")
        linear(f"{target}/ffn/linear_1", f"{source}.fc2")

    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    out["encoder/position_encodings/encodings"] = cast["model.encoder.embed_positions.weight"]
    norm("encoder/layer_norm", "model.encoder.layer_norm")
    for i in range(config["encoder_layers"]):
        s, t = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        norm(f"{t}/self_attention/layer_norm", f"{s}.self_attn_layer_norm")
        fused(f"{t}/self_attention/linear_0", [f"{s}.self_attn.{p}_proj" for p in "qkv"])
        linear(f"{t}/self_attention/linear_1", f"{s}.self_attn.out_proj")
        ffn(t, s)
    out["decoder/embeddings/weight"] = cast["model.decoder.embed_tokens.weight"]
    out["decoder/position_encodings/encodings"] = cast["model.decoder.embed_positions.weight"]
    norm("decoder/layer_norm", "model.decoder.layer_norm")
    for i in range(config["decoder_layers"]):
        s, t = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        norm(f"{t}/self_attention/layer_norm", f"{s}.self_attn_layer_norm")
        fused(f"{t}/self_attention/linear_0", [f"{s}.self_attn.{p}_proj" for p in "qkv"])
        linear(f"{t}/self_attention/linear_1", f"{s}.self_attn.out_proj")
        norm(f"{t}/attention/layer_norm", f"{s}.encoder_attn_layer_norm")
        linear(f"{t}/attention/linear_0", f"{s}.encoder_attn.q_proj")
        fused(f"{t}/attention/linear_1", [f"{s}.encoder_attn.{p}_proj" for p in "kv"])
        linear(f"{t}/attention/linear_2", f"{s}.encoder_attn.out_proj")
        ffn(t, s)
    scalars = {"decoder/activation": np.int8(3), "decoder/alibi": np.int8(0), "decoder/pre_norm": np.int8(1),
               "decoder/scale_embeddings": np.int8(0), "decoder/start_from_zero_embedding": np.int8(0),
               "decoder/alignment_heads": np.int16(1), "decoder/alignment_layer": np.int16(-1),
               "decoder/num_heads": np.int16(config["decoder_attention_heads"]),
               "encoder/num_heads": np.int16(config["encoder_attention_heads"])}
    out.update({name: np.array(value) for name, value in scalars.items()})
    return out


def write_ct2_folder(hf_folder: Path, out: Path, tokenizer_json: bytes, dtype: str = "float16") -> Path:
    """out/{model.bin, config.json, tokenizer.json, vocabulary.txt} from a transformers Whisper folder."""
    from safetensors.numpy import load_file

    config = json.loads((hf_folder / "config.json").read_text())
    generation = json.loads((hf_folder / "generation_config.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    variables = ct2_variables(load_file(hf_folder / "model.safetensors"), config, dtype)
    serialize(out / "model.bin", variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    ct2_config = {"lang_ids": sorted(generation["lang_to_id"].values()), "suppress_ids": [1, 2, 7],
                  "suppress_ids_begin": [220, 50257], "alignment_heads": [[0, 0]]}
    (out / "config.json").write_text(json.dumps(ct2_config))
    (out / "tokenizer.json").write_bytes(tokenizer_json)
    tokens = {t["id"]: t["content"] for t in json.loads(tokenizer_json)["added_tokens"]}
    vocab_size = config["vocab_size"]
    words = [tokens.get(i, f"tok{i}") for i in range(vocab_size)]
    # The published multilingual vocabulary has an empty token at 50256; CTranslate2 (4.8.5) only
    # calls a Whisper multilingual (detect_language allowed) when its vocabulary reads the same way.
    words[50256] = ""
    (out / "vocabulary.txt").write_text("\n".join(words) + "\n")
    return out


SPECIAL = {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|translate|>": 50358, "<|transcribe|>": 50359,
           "<|startoflm|>": 50360, "<|startofprev|>": 50361, "<|nocaptions|>": 50362, "<|notimestamps|>": 50363}


def tokenizer_json() -> bytes:
    """A tokenizer.json with the published special and language tokens (all the converter reads of it)."""
    from scripts.checkpoints.whisper import lang_to_id

    added = [{"id": i, "content": t, "special": True} for t, i in {**SPECIAL, **lang_to_id()}.items()]
    return json.dumps({"version": "1.0", "added_tokens": sorted(added, key=lambda t: t["id"])}).encode()


def fake_wheels(folder: Path, ct2: Path) -> Path:
    """Two wheels laid out as the PyPI packages, model.bin cut in two halves."""
    from scripts.ct2 import packages

    data = (ct2 / "model.bin").read_bytes()
    half = len(data) // 2
    folder.mkdir(parents=True, exist_ok=True)
    for index, package in enumerate(packages.PACKAGES, start=1):
        with zipfile.ZipFile(folder / f"{package.module}-{package.version}-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{package.module}/data/model.bin.part{index}", data[:half] if index == 1 else data[half:])
            if index == 1:
                for name in packages.SIDE_FILES:
                    wheel.write(ct2 / name, f"{package.module}/data/{name}")
    return folder


def publish(monkeypatch, ct2: Path) -> None:
    """Make a tiny model.bin 'the published one' (size and sha256) for the packaging code."""
    from scripts import convert_whisper_ct2
    from scripts.ct2 import packages

    data = (ct2 / "model.bin").read_bytes()
    monkeypatch.setattr(packages, "MODEL_BIN_BYTES", len(data))
    monkeypatch.setattr(packages, "MODEL_BIN_SHA256", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(convert_whisper_ct2, "MODEL_BIN_SHA256", hashlib.sha256(data).hexdigest())
