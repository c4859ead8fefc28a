"""Whisper -> one ONNX graph for language detection: encoder + the first decoder step's language logits.

The graph takes `input_features` [batch, n_mels, 3000] (backend.audio.features.whisper_log_mel)
and returns `language_logits` [batch, n_languages]: the decoder runs one step on
<|startoftranscript|> and only the language tokens' rows of the (tied) output embedding are
kept, so the 51865-row vocabulary projection is not shipped.

Parity is judged on real speech (scripts/speech_parity.py): fp32 must equal torch on every clip;
int8 ships when it agrees with fp32 on the Kokoro decision set and on every confident espeak-ng
clip. Synthetic signals (harmonics, a chirp, noise) are inputs Whisper never saw: its language
logits there are flat, and they refused an int8 whisper-base that agrees on speech.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from backend.audio.features import whisper_log_mel
from backend.pipelines.language.detector import checkpoint_name
from backend.pipelines.language.whisper_torch import language_tokens
from backend.pipelines.windows import softmax
from scripts.export import common
from scripts.export.common import Parity, choose, max_abs, quantize_int8, top1_agreement, torch_to_onnx, write_meta

BATCH = 4  # clips per forward pass: whisper-base's encoder attention is ~70 MB per clip


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


def export(source: str, out_dir: Path, *, int8: bool = True, speech=None) -> list[Parity]:
    """Export `source` (hub id or folder) to out_dir/{model.onnx, meta.json}; returns the parity rows.

    `speech`: (decision clips, guard clips) as scripts.speech_clips.parity_sets() gives them (the default).
    """
    import torch
    from transformers import WhisperForConditionalGeneration

    from scripts.speech_clips import parity_sets
    from scripts.speech_parity import GUARD_TOLERANCE, SPEECH_TOLERANCE, speech_parity

    decision, guard = speech if speech is not None else parity_sets()
    model = WhisperForConditionalGeneration.from_pretrained(source, attn_implementation="eager").eval()
    languages, token_ids, start_id = language_tokens(source, model)  # as the torch pipeline reads them
    wrapper = _wrapper(model, token_ids, start_id)
    n_mels = int(model.config.num_mel_bins)
    clips = decision + guard
    features = np.stack([whisper_log_mel(audio, n_mels=n_mels) for _, audio in clips])
    with torch.inference_mode():
        reference = np.concatenate([wrapper(torch.from_numpy(features[i:i + BATCH])).numpy()
                                    for i in range(0, len(features), BATCH)])

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        torch_to_onnx(wrapper, (torch.from_numpy(features[:1]),), fp32, ["input_features"], ["language_logits"],
                      {"input_features": {0: "batch"}, "language_logits": {0: "batch"}})
        del model, wrapper
        got = _logits(fp32, features)
        rows_fp32 = [Parity("whisper", "fp32", "max abs err", max_abs(reference, got), common.FP32_TOLERANCE),
                     Parity("whisper", "fp32", "speech top-1 agreement", top1_agreement(reference, got), 1.0, True)]
        rows_int8: list[Parity] = []
        int8_path = None
        if int8:
            int8_path = fp32.with_name("model.int8.onnx")
            quantize_int8(fp32, int8_path)
            ref_p, int8_p = softmax(reference.astype(np.float64), axis=-1), softmax(
                _logits(int8_path, features).astype(np.float64), axis=-1)
            n = len(decision)
            truth = [languages.index(clip.language) if clip.language in languages else -1 for clip, _ in decision]
            rows_int8 = speech_parity("whisper", "int8", ref_p[:n], int8_p[:n], truth, SPEECH_TOLERANCE,
                                      label=_label(decision))
            if guard:
                rows_int8 += speech_parity("whisper", "int8", ref_p[n:], int8_p[n:], None, GUARD_TOLERANCE,
                                           label=f"{_label(guard)} guard")
        chosen = choose(fp32, int8_path, rows_fp32, rows_int8)
        shutil.move(chosen, out_dir / "model.onnx")
    write_meta(out_dir, {
        "family": "whisper", "source": checkpoint_name(source),
        "precision": "int8" if chosen.name.endswith("int8.onnx") else "fp32",
        "parity": f"real speech: {_label(decision)} decides, {_label(guard) if guard else 'no guard set'} guards",
        "input": "input_features", "output": "language_logits",
        "languages": languages, "language_token_ids": token_ids, "decoder_start_token_id": start_id,
        "features": {"n_mels": n_mels, "chunk_s": 30, "sampling_rate": 16000},
    })
    return rows_fp32 + rows_int8


def _label(clips) -> str:
    """How the rows name a speech set: its engines and size, "kokoro (30)"."""
    return f"{'+'.join(sorted({clip.engine for clip, _ in clips}))} ({len(clips)})"


def _logits(path: Path, features: np.ndarray) -> np.ndarray:
    """The graph's language logits on every clip, BATCH at a time, with the server's own session options."""
    from backend.pipelines.onnx_session import make_session
    from config import build_settings

    session = make_session(path, build_settings())
    return np.concatenate([session.run(None, {"input_features": features[i:i + BATCH]})[0]
                           for i in range(0, len(features), BATCH)])
