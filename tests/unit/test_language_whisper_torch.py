"""WhisperTorchPipeline on a tiny random checkpoint: exact agreement with the full model's first step,
the trimmed output projection, options, long audio, int8 / bf16, and missing weights."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from backend.errors import BadRequest, ModelUnavailable  # noqa: E402
from backend.pipelines.language.whisper_torch import WhisperTorchPipeline  # noqa: E402
from backend.pipelines.torch_utils import bf16_supported  # noqa: E402
from scripts.checkpoints.whisper import FIRST_LANGUAGE_ID, START_OF_TRANSCRIPT_ID, whisper_languages  # noqa: E402

N_LANGUAGES = 99
VOCAB = 51865


def _pipeline(make_settings, folder, **overrides) -> WhisperTorchPipeline:
    pipe = WhisperTorchPipeline(make_settings(whisper_model=str(folder), **overrides))
    pipe.load()
    return pipe


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:
    from backend.audio.decode import decode_audio
    return decode_audio(speech_wav, max_seconds=60).samples


@pytest.fixture(scope="module")
def pipe(whisper_checkpoint):
    from config import build_settings
    pipeline = WhisperTorchPipeline(build_settings(whisper_model=str(whisper_checkpoint)))
    pipeline.load()
    yield pipeline
    pipeline.close()


def _all(pipe, audio, **options) -> dict[str, float]:
    result = pipe({"audio": audio, "top_k": options.pop("top_k", N_LANGUAGES), **options})
    return {row["language"]: row["probability"] for row in result["languages"]}


def test_languages_come_from_lang_to_id(pipe) -> None:
    assert pipe.languages == whisper_languages(N_LANGUAGES)
    assert pipe.languages[:3] == ["en", "zh", "de"]


def test_probabilities_equal_full_whisper_first_step(pipe, whisper_checkpoint, speech) -> None:
    """Same numbers as the untouched model's decoder step after <|startoftranscript|>, softmax over language tokens."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    full = WhisperForConditionalGeneration.from_pretrained(whisper_checkpoint).eval()
    features = WhisperFeatureExtractor.from_pretrained(whisper_checkpoint)(
        speech, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        logits = full(input_features=features, decoder_input_ids=torch.tensor([[START_OF_TRANSCRIPT_ID]])).logits[0, -1]
    expected = torch.softmax(logits[FIRST_LANGUAGE_ID:FIRST_LANGUAGE_ID + N_LANGUAGES].double(), -1).numpy()
    got = _all(pipe, speech)
    assert np.allclose([got[code] for code in whisper_languages(N_LANGUAGES)], expected, atol=2e-6)


def test_answer_shape_and_sum(pipe, speech) -> None:
    result = pipe({"audio": speech, "top_k": 3, "allowed_languages": None})
    assert result["language"] == "de" and result["probability"] > 0.5  # the checkpoint favours de
    assert [row["language"] for row in result["languages"]][0] == "de" and len(result["languages"]) == 3
    assert result["probability"] >= result["languages"][1]["probability"] >= result["languages"][2]["probability"]
    assert result["windows"] == 1 and result["seconds_analysed"] == pytest.approx(speech.size / 16000, abs=1e-3)
    assert sum(_all(pipe, speech).values()) == pytest.approx(1.0, abs=1e-5)


def test_allowed_languages_renormalise(pipe, speech) -> None:
    logits = pipe.logits(pipe.features(speech))
    pair = logits[[pipe.languages.index("en"), pipe.languages.index("fr")]].astype(np.float64)
    expected = np.exp(pair - pair.max()) / np.exp(pair - pair.max()).sum()
    subset = _all(pipe, speech, allowed_languages=["EN", "fr"], top_k=2)
    assert set(subset) == {"en", "fr"} and sum(subset.values()) == pytest.approx(1.0, abs=1e-5)
    assert [subset["en"], subset["fr"]] == pytest.approx(expected.tolist(), abs=2e-6)


@pytest.mark.parametrize("options", [{"top_k": 0}, {"top_k": "x"}, {"allowed_languages": ["xx"]}])
def test_bad_options_are_400(pipe, speech, options) -> None:
    with pytest.raises(BadRequest):
        pipe({"audio": speech, **options})


def test_long_audio_is_averaged_over_windows(pipe) -> None:
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(35 * 16000)).astype(np.float32)
    result = pipe({"audio": audio, "top_k": 3})
    assert result["windows"] == 2 and result["seconds_analysed"] == pytest.approx(35.0)
    # The average of per-window distributions: the mean of each window's own answer (last window flush with the end).
    per_window = [_all(pipe, audio[start:start + 30 * 16000])["de"] for start in (0, 5 * 16000)]
    assert result["probability"] == pytest.approx(float(np.mean(per_window)), abs=1e-5)


def test_output_projection_is_trimmed_to_language_rows(pipe) -> None:
    shapes = {name: tuple(t.shape) for name, t in pipe.model.state_dict().items() if hasattr(t, "shape")}
    assert not [name for name, shape in shapes.items() if VOCAB in shape]
    assert shapes["proj_out.weight"] == (N_LANGUAGES, pipe.model.config.d_model)


def test_int8_keeps_the_answer_and_has_no_vocabulary_copy(make_settings, whisper_checkpoint, pipe, speech) -> None:
    int8 = _pipeline(make_settings, whisper_checkpoint, use_int8_quantization=True)
    assert int8.describe()["int8"] is True
    assert any("_packed_params" in name for name in int8.model.state_dict())
    assert not [n for n, t in int8.model.state_dict().items() if hasattr(t, "shape") and VOCAB in tuple(t.shape)]
    reference, quantised = _all(pipe, speech), _all(int8, speech)
    assert max(quantised, key=quantised.get) == max(reference, key=reference.get)
    assert max(abs(quantised[c] - reference[c]) for c in reference) < 0.05


@pytest.mark.skipif(not bf16_supported(), reason="this CPU has no bf16 support")
def test_bfloat16(make_settings, whisper_checkpoint, pipe, speech) -> None:
    bf16 = _pipeline(make_settings, whisper_checkpoint, model_dtype="bfloat16")
    assert bf16.describe()["dtype"] == "bfloat16"
    assert next(bf16.model.model.encoder.parameters()).dtype == torch.bfloat16
    assert bf16({"audio": speech})["language"] == "de"


def test_missing_folder_is_model_unavailable(make_settings, tmp_path) -> None:
    with pytest.raises(ModelUnavailable, match="huggingface-cli download"):
        _pipeline(make_settings, tmp_path / "no-such-whisper")


def test_checkpoint_without_language_map_is_model_unavailable(make_settings, whisper_checkpoint, tmp_path) -> None:
    folder = tmp_path / "english-only"
    shutil.copytree(whisper_checkpoint, folder)
    generation = json.loads((folder / "generation_config.json").read_text())
    generation.pop("lang_to_id")
    (folder / "generation_config.json").write_text(json.dumps(generation))
    with pytest.raises(ModelUnavailable, match="lang_to_id"):
        _pipeline(make_settings, folder)


def test_silent_and_nan_audio_are_refused(pipe) -> None:
    from backend.errors import ApiError
    for audio in (np.zeros(16000, np.float32), np.full(16000, np.nan, np.float32)):
        with pytest.raises(ApiError) as info:
            pipe({"audio": audio})
        assert 400 <= info.value.status < 500


def test_int8_lets_the_checkpoint_mapping_go(make_settings, whisper_checkpoint, tmp_path) -> None:
    """Quantised Linear biases and the few fp32 tensors left are copied, so the mmap'd file is unmapped."""
    import gc
    from pathlib import Path

    folder = shutil.copytree(whisper_checkpoint, tmp_path / "whisper")  # a file no other test maps
    pipe = _pipeline(make_settings, folder, use_int8_quantization=True)
    gc.collect()
    assert str(folder / "model.safetensors") not in Path("/proc/self/maps").read_text()
    assert pipe({"audio": np.full(16000, 0.1, np.float32) * np.sin(np.arange(16000))})["windows"] == 1
