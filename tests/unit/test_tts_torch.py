"""The torch Kokoro pipeline on a tiny random checkpoint: memory-lean loading is exact, misses are 503s."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from backend.errors import ModelUnavailable
from backend.api.schemas.tts import validate_request
from backend.pipelines.tts.kokoro_torch import KokoroTorchPipeline, voice_names


@pytest.fixture(scope="module")
def settings(kokoro_checkpoint):
    from config import build_settings
    # One intra-op thread: on a shared, oversubscribed box two OpenMP threads ran 8x slower.
    return build_settings(kokoro_model_dir=kokoro_checkpoint, inference_threads=1, prometheus_multiproc_dir=None)


@pytest.fixture(scope="module")
def pipeline(settings):
    pipe = KokoroTorchPipeline(settings)
    pipe.load()
    yield pipe
    pipe.close()


def _synth(model, ids, style, seed=0):
    import torch
    torch.manual_seed(seed)  # the vocoder draws random phase and noise
    with torch.inference_mode():
        audio, _ = model.forward_with_tokens(torch.tensor([[0, *ids, 0]]), torch.from_numpy(style), 1.0)
    return audio.numpy()


@pytest.mark.filterwarnings("ignore:dropout option adds dropout", "ignore:.*weight_norm.* is deprecated")
def test_lean_load_equals_kokoros_own_loader(pipeline, kokoro_checkpoint) -> None:
    """Meta-device build + mmap + assign + folded weight norm gives kokoro's waveform exactly."""
    import torch
    from kokoro.model import KModel
    from torch.nn.utils.weight_norm import WeightNorm

    model = pipeline.model
    assert not any(p.device.type == "meta" for p in model.parameters())
    assert not any(isinstance(h, WeightNorm) for m in model.modules() for h in m._forward_pre_hooks.values())
    assert not any(name.endswith(("weight_g", "weight_v")) for name, _ in model.named_parameters())

    reference = KModel(repo_id="hexgrad/Kokoro-82M", config=str(kokoro_checkpoint / "config.json"),
                       model=str(kokoro_checkpoint / "kokoro-v1_0.pth")).eval()
    assert sum(p.numel() for p in reference.parameters()) > sum(p.numel() for p in model.parameters())  # g + v
    style = torch.load(kokoro_checkpoint / "voices" / "af_heart.pt").numpy()[11].reshape(1, 256)
    ids = [pipeline.vocab[ch] for ch in "həlˈO wˈɜɹld"]
    expected, got = _synth(reference, ids, style), _synth(model, ids, style)
    assert got.shape == expected.shape and got.size > 0
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_pieces_are_synthesised_lazily(pipeline, settings, monkeypatch) -> None:
    calls = []
    original = pipeline._synthesize
    monkeypatch.setattr(pipeline, "_synthesize", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    text = "First one. " + " ".join(["A much longer second part that keeps going on and on."] * 20)
    features = pipeline.preprocess(validate_request(settings, text=text, fmt="wav"))
    assert len(features.plan) >= 3 and all(len(p.token_ids) <= settings.tts_piece_tokens for p in features.plan)
    blocks = pipeline.run(features).blocks
    first = next(blocks)
    assert len(calls) == 1 and first.dtype == np.float32 and first.size > 0
    blocks.close()


def test_voice_listing_reads_the_folder(settings) -> None:
    assert voice_names(settings) == ["af_bella", "af_heart", "am_adam"]


def test_missing_files_are_named(tmp_path, kokoro_checkpoint) -> None:
    from config import build_settings
    shutil.copy(kokoro_checkpoint / "config.json", tmp_path / "config.json")
    pipe = KokoroTorchPipeline(build_settings(kokoro_model_dir=tmp_path, prometheus_multiproc_dir=None))
    with pytest.raises(ModelUnavailable) as caught:
        pipe.load()
    assert "*.pth" in caught.value.message and "voices/*.pt" in caught.value.message
    assert "huggingface-cli download hexgrad/Kokoro-82M" in caught.value.message


def test_offline_without_local_folder_is_a_clear_503(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    from config import build_settings
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    pipe = KokoroTorchPipeline(build_settings(prometheus_multiproc_dir=None))
    with pytest.raises(ModelUnavailable) as caught:
        pipe.load()
    message = caught.value.message
    assert caught.value.status == 503
    assert "config.json" in message and "kokoro-v1_0.pth" in message and "voices/*.pt" in message
    assert "KOKORO_MODEL_DIR" in message and "huggingface-cli download" in message
