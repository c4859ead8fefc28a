"""ASTTorchPipeline on tiny random checkpoints: agreement with the model itself, decisions both ways,
sliding windows over long audio, AudioSet (sigmoid) labels, AI_VOICE_LABELS, int8 / bf16, missing weights."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
# transformers' own AST extractor (the reference in one test) has an empty top filter and says so.
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")

from backend.errors import ModelUnavailable  # noqa: E402
from backend.pipelines.ai_voice.ast_torch import ASTTorchPipeline  # noqa: E402
from backend.pipelines.torch_utils import bf16_supported  # noqa: E402
from scripts.checkpoints.ast import TINY_MAX_LENGTH, build_ast_checkpoint  # noqa: E402

RESULT_KEYS = {"score", "score_mean", "score_max", "threshold", "is_ai_generated", "model", "windows",
               "seconds_analysed", "synthetic_labels"}


def _pipeline(make_settings, folder, **overrides) -> ASTTorchPipeline:
    pipe = ASTTorchPipeline(make_settings(ai_voice_model=str(folder), **overrides))
    pipe.load()
    return pipe


def _voice(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced, vibrato'd harmonic tone with syllable-rate amplitude modulation and breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (0.2 * voiced * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def biased(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("ast-biased")
    return {"spoof": build_ast_checkpoint(root / "spoof", synthetic_bias=12.0),
            "human": build_ast_checkpoint(root / "human", synthetic_bias=-12.0),
            "audioset": build_ast_checkpoint(root / "audioset", labels="audioset")}


def test_score_is_the_models_spoof_probability(make_settings, ast_checkpoint) -> None:
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    pipe = _pipeline(make_settings, ast_checkpoint)
    audio = _voice(2.0)
    result = pipe({"audio": audio})
    assert RESULT_KEYS <= set(result) and result["windows"] == 1
    model = ASTForAudioClassification.from_pretrained(ast_checkpoint).eval()
    features = ASTFeatureExtractor.from_pretrained(ast_checkpoint)(audio, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        expected = torch.softmax(model(**features).logits[0].double(), -1)[1].item()
    assert result["score"] == pytest.approx(expected, abs=1e-5)
    assert result["synthetic_labels"] == ["spoof"] and result["activation"] == "softmax"
    assert result["model"] == str(ast_checkpoint) and result["threshold"] == 0.5


def test_decision_follows_the_model(make_settings, biased) -> None:
    audio = _voice(2.0)
    spoof = _pipeline(make_settings, biased["spoof"])({"audio": audio})
    human = _pipeline(make_settings, biased["human"])({"audio": audio})
    assert spoof["is_ai_generated"] is True and spoof["score"] > 0.99
    assert human["is_ai_generated"] is False and human["score"] < 0.01


def test_threshold_comes_from_settings(make_settings, ast_checkpoint) -> None:
    result = _pipeline(make_settings, ast_checkpoint, ai_voice_threshold=1.0)({"audio": _voice(2.0)})
    assert result["threshold"] == 1.0 and result["is_ai_generated"] is False


def test_long_audio_slides_overlapping_windows(make_settings, ast_checkpoint) -> None:
    pipe = _pipeline(make_settings, ast_checkpoint)
    window = 400 + (TINY_MAX_LENGTH - 1) * 160  # samples filling exactly max_length frames
    hop = window // 2
    audio = _voice(10.0)
    result = pipe({"audio": audio})
    expected = -(-(audio.size - window) // hop) + 1  # windows every hop, the last flush with the end
    assert result["windows"] == expected == 7
    assert result["seconds_analysed"] == pytest.approx(10.0)
    scores = np.array(result["window_scores"])
    assert result["score_mean"] == pytest.approx(scores.mean(), abs=1e-6)
    assert result["score_max"] == pytest.approx(scores.max(), abs=1e-6) and result["score_max"] >= result["score_mean"]


def test_audioset_model_uses_sigmoid_of_speech_synthesizer(make_settings, biased) -> None:
    pipe = _pipeline(make_settings, biased["audioset"])
    result = pipe({"audio": _voice(2.0)})
    assert result["synthetic_labels"] == ["Speech synthesizer"] and result["activation"] == "sigmoid"
    logits = pipe.logits(pipe.features(_voice(2.0)))
    assert result["score"] == pytest.approx(1 / (1 + np.exp(-float(logits[7]))), abs=1e-5)


def test_configured_labels_win_and_unknown_ones_fail(make_settings, biased) -> None:
    flipped = _pipeline(make_settings, biased["spoof"], ai_voice_labels=["bonafide"])({"audio": _voice(2.0)})
    assert flipped["synthetic_labels"] == ["bonafide"] and flipped["score"] < 0.01
    with pytest.raises(ModelUnavailable, match="AI_VOICE_LABELS"):
        _pipeline(make_settings, biased["spoof"], ai_voice_labels=["robot"])


def test_int8(make_settings, ast_checkpoint) -> None:
    reference = _pipeline(make_settings, ast_checkpoint)({"audio": _voice(3.0)})
    int8 = _pipeline(make_settings, ast_checkpoint, use_int8_quantization=True)
    assert int8.describe()["int8"] is True
    assert any("_packed_params" in name for name in int8.model.state_dict())
    assert int8({"audio": _voice(3.0)})["score"] == pytest.approx(reference["score"], abs=0.05)


@pytest.mark.skipif(not bf16_supported(), reason="this CPU has no bf16 support")
def test_bfloat16(make_settings, ast_checkpoint) -> None:
    reference = _pipeline(make_settings, ast_checkpoint)({"audio": _voice(3.0)})
    bf16 = _pipeline(make_settings, ast_checkpoint, model_dtype="bfloat16")
    assert bf16.describe()["dtype"] == "bfloat16"
    assert bf16({"audio": _voice(3.0)})["score"] == pytest.approx(reference["score"], abs=0.05)


def test_missing_folder_is_model_unavailable(make_settings, tmp_path) -> None:
    with pytest.raises(ModelUnavailable, match="huggingface-cli download"):
        _pipeline(make_settings, tmp_path / "no-such-ast")


def test_int8_lets_the_checkpoint_mapping_go(make_settings, ast_checkpoint, tmp_path) -> None:
    import gc
    import shutil
    from pathlib import Path

    folder = shutil.copytree(ast_checkpoint, tmp_path / "ast")  # a file no other test maps
    pipe = _pipeline(make_settings, folder, use_int8_quantization=True)
    gc.collect()
    assert str(folder / "model.safetensors") not in Path("/proc/self/maps").read_text()
    assert pipe({"audio": _voice(1.0)})["windows"] == 1
