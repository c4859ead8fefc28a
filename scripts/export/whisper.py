"""Whisper -> one ONNX graph for language detection: encoder + the first decoder step's language logits.

The graph takes `input_features` [batch, n_mels, 3000] (backend.audio.features.whisper_log_mel)
and returns `language_logits` [batch, n_languages]: the decoder runs one step on
<|startoftranscript|> and only the language tokens' rows of the (tied) output embedding are
kept, so the 51865-row vocabulary projection is not shipped.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from backend.audio.features import whisper_log_mel
from backend.pipelines.language.whisper_torch import language_tokens
from scripts.export.common import Parity, classifier_parity, torch_to_onnx, write_meta
from scripts.export.signals import parity_signals


def _wrapper(model, token_ids: list[int], start_id: int):
    import torch

    if model.model.decoder.embed_scale != 1.0:
        raise ValueError("whisper checkpoints with scale_embedding are not supported by this export")

    class LanguageLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.model.encoder
            self.decoder = model.model.decoder
            # Only the start token's embedding row and the language rows of the tied output
            # projection are needed: copies, so the 51865-row table is not in the graph.
            weight = model.proj_out.weight.detach()
            self.register_buffer("start_embedding", weight[start_id].clone().view(1, 1, -1), persistent=False)
            self.register_buffer("language_rows", weight[token_ids].clone(), persistent=False)

        def forward(self, input_features):
            hidden = self.encoder(input_features).last_hidden_state
            batch = input_features.shape[0]
            start = self.start_embedding.expand(batch, 1, -1)
            # an explicit mask keeps transformers off its packed-sequence check (aten::diff, not exportable)
            mask = torch.ones(batch, 1, dtype=torch.long)
            step = self.decoder(inputs_embeds=start, attention_mask=mask, encoder_hidden_states=hidden,
                                use_cache=False).last_hidden_state
            return step[:, -1, :] @ self.language_rows.T

    return LanguageLogits().eval()


def export(source: str, out_dir: Path, *, int8: bool = True, n_inputs: int = 4) -> list[Parity]:
    """Export `source` (hub id or folder) to out_dir/{model.onnx, meta.json}; returns the parity rows."""
    import torch
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(source, attn_implementation="eager").eval()
    languages, token_ids, start_id = language_tokens(source, model)  # as the torch pipeline reads them
    wrapper = _wrapper(model, token_ids, start_id)
    n_mels = int(model.config.num_mel_bins)
    features = np.stack([whisper_log_mel(signal, n_mels=n_mels) for signal in parity_signals(8.0, n_inputs)])
    with torch.inference_mode():
        reference = wrapper(torch.from_numpy(features)).numpy()

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        torch_to_onnx(wrapper, (torch.from_numpy(features[:1]),), fp32, ["input_features"], ["language_logits"],
                      {"input_features": {0: "batch"}, "language_logits": {0: "batch"}})
        del model, wrapper
        chosen, rows = classifier_parity("whisper", fp32, "input_features", features, reference, int8)
        shutil.move(chosen, out_dir / "model.onnx")
    write_meta(out_dir, {
        "family": "whisper", "source": str(source), "precision": "int8" if chosen.name.endswith("int8.onnx") else "fp32",
        "input": "input_features", "output": "language_logits",
        "languages": languages, "language_token_ids": token_ids, "decoder_start_token_id": start_id,
        "features": {"n_mels": n_mels, "chunk_s": 30, "sampling_rate": 16000},
    })
    return rows
