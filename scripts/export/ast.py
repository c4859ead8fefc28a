"""Audio Spectrogram Transformer classifier -> ONNX: `input_values` [batch, frames, mels] -> `logits`.

meta.json carries what the lean runtime needs instead of transformers' config classes:
id2label and the feature-extractor parameters (backend.audio.features.ast_fbank).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from backend.audio.features import AST_MEAN, AST_STD, ast_fbank
from backend.pipelines.ai_voice.ast_torch import feature_extractor
from scripts.export.common import Parity, classifier_parity, torch_to_onnx, write_meta
from scripts.export.signals import parity_signals


def feature_params(source: str, config) -> dict:
    """Feature-extractor parameters from the checkpoint's preprocessor_config.json, else the config's."""
    params = {"num_mel_bins": int(config.num_mel_bins), "max_length": int(config.max_length),
              "do_normalize": True, "mean": AST_MEAN, "std": AST_STD, "sampling_rate": 16000}
    local = Path(source) / "preprocessor_config.json"
    stored = json.loads(local.read_text()) if local.is_file() else _hub_preprocessor(source)
    params.update({key: stored[key] for key in params if key in stored})
    return params


def _hub_preprocessor(source: str) -> dict:
    if Path(source).exists():
        return {}
    try:
        return feature_extractor(source).to_dict()
    except OSError:  # no preprocessor config published: the model's config decides
        return {}


def export(source: str, out_dir: Path, *, int8: bool = True, n_inputs: int = 4) -> list[Parity]:
    """Export `source` (hub id or folder) to out_dir/{model.onnx, meta.json}; returns the parity rows."""
    import torch
    from transformers import ASTForAudioClassification

    model = ASTForAudioClassification.from_pretrained(source, attn_implementation="eager").eval()
    params = feature_params(source, model.config)
    seconds = params["max_length"] / 100 + 0.5
    features = np.stack([ast_fbank(signal, params["num_mel_bins"], params["max_length"], normalize=params["do_normalize"],
                                   mean=params["mean"], std=params["std"]) for signal in parity_signals(seconds, n_inputs)])

    class Logits(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_values):
            return self.model(input_values=input_values).logits

    wrapper = Logits(model).eval()
    with torch.inference_mode():
        reference = wrapper(torch.from_numpy(features)).numpy()
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    problem_type = getattr(model.config, "problem_type", None)

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        torch_to_onnx(wrapper, (torch.from_numpy(features[:1]),), fp32, ["input_values"], ["logits"],
                      {"input_values": {0: "batch"}, "logits": {0: "batch"}})
        del model, wrapper
        chosen, rows = classifier_parity("ast", fp32, "input_values", features, reference, int8)
        shutil.move(chosen, out_dir / "model.onnx")
    write_meta(out_dir, {
        "family": "ast", "source": str(source), "precision": "int8" if chosen.name.endswith("int8.onnx") else "fp32",
        "input": "input_values", "output": "logits",
        "id2label": {str(k): v for k, v in sorted(id2label.items())}, "problem_type": problem_type, "features": params,
    })
    return rows
