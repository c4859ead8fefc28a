"""The backend-independent half of language detection: language map, averaging, options.

A scripted backend (its logits per window are given) isolates the base class's arithmetic; the
torch and ONNX backends are tested against the real models in their own test modules.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from backend.errors import BadRequest, InvalidAudio, UnprocessableEntity
from backend.pipelines.language.detector import WINDOW_SAMPLES, LanguageDetector, language_codes, read_lang_to_id
from backend.pipelines.windows import softmax
from tests.fakes import ScriptedWindows

SR = 16000
CODES = ["en", "zh", "de"]


class ScriptedDetector(ScriptedWindows, LanguageDetector):
    """A backend whose logits for successive windows are given; records the windows it was shown."""

    def __init__(self, settings, logits: list[list[float]]) -> None:
        super().__init__(settings)
        self.languages = list(CODES)
        self.follow(logits)


def voice(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def probabilities(result: dict) -> dict[str, float]:
    return {row["language"]: row["probability"] for row in result["languages"]}


# --- helpers -------------------------------------------------------------------------------------------
def test_language_codes_follow_token_ids() -> None:
    codes, ids = language_codes({"<|de|>": 50261, "<|en|>": 50259, "<|zh|>": 50260})
    assert codes == ["en", "zh", "de"] and ids == [50259, 50260, 50261]
    with pytest.raises(ValueError, match="lang_to_id"):
        language_codes({})


def test_read_lang_to_id_prefers_the_config_then_the_file(tmp_path) -> None:
    (tmp_path / "generation_config.json").write_text(json.dumps({"lang_to_id": {"<|en|>": 50259}}))
    assert read_lang_to_id(tmp_path, generation_config=None) == {"<|en|>": 50259}

    class Loaded:
        lang_to_id = {"<|fr|>": 50265}

    assert read_lang_to_id(tmp_path, Loaded()) == {"<|fr|>": 50265}
    assert read_lang_to_id(None) == {}


# --- the base class's arithmetic ---------------------------------------------------------------------------
def test_windows_are_averaged_as_probabilities(make_settings) -> None:
    logits = [[4.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 1.0, 0.0]]
    detector = ScriptedDetector(make_settings(), logits)
    result = detector({"audio": voice(65), "top_k": 3})
    expected = softmax(np.array(logits)).mean(axis=0)  # mean of distributions, not softmax of mean logits
    assert result["windows"] == 3 and result["seconds_analysed"] == 65.0 and result["window_s"] == 30
    assert detector.windows_seen == [WINDOW_SAMPLES] * 3
    assert probabilities(result) == pytest.approx(dict(zip(CODES, expected, strict=True)), abs=1e-6)
    assert [row["language"] for row in result["languages"]] == ["en", "de", "zh"]
    assert result["language"] == "en" and result["probability"] == result["languages"][0]["probability"]
    assert result["backend"] == "scripted" and result["languages_considered"] == 3


def test_short_audio_is_one_window(make_settings) -> None:
    detector = ScriptedDetector(make_settings(), [[0.0, 0.0, 0.0]])
    result = detector({"audio": voice(2.5)})
    assert detector.windows_seen == [int(2.5 * SR)] and result["windows"] == 1
    assert result["seconds_analysed"] == 2.5
    assert sum(probabilities(result).values()) == pytest.approx(1.0, abs=1e-5)  # default top_k 5 > 3 languages: all listed


def test_allowed_languages_renormalise(make_settings) -> None:
    detector = ScriptedDetector(make_settings(), [[4.0, 0.0, 1.0]])
    result = detector({"audio": voice(1), "top_k": 5, "allowed_languages": ["ZH", "<|de|>"]})
    assert [row["language"] for row in result["languages"]] == ["de", "zh"]  # top_k capped by the subset
    assert result["probability"] == pytest.approx(np.e / (np.e + 1), abs=1e-6)
    assert result["languages_considered"] == 2


def test_allowed_languages_as_comma_string(make_settings) -> None:
    result = ScriptedDetector(make_settings(), [[4.0, 0.0, 1.0]])({"audio": voice(1), "allowed_languages": "en, zh"})
    assert set(probabilities(result)) == {"en", "zh"}


def test_top_k(make_settings) -> None:
    assert len(ScriptedDetector(make_settings(), [[1, 2, 3]])({"audio": voice(1), "top_k": 1})["languages"]) == 1
    assert len(ScriptedDetector(make_settings(), [[1, 2, 3]])({"audio": voice(1), "top_k": "2"})["languages"]) == 2
    assert len(ScriptedDetector(make_settings(), [[1, 2, 3]])({"audio": voice(1), "top_k": 99})["languages"]) == 3


@pytest.mark.parametrize("options, words", [
    ({"top_k": 0}, "at least 1"), ({"top_k": -2}, "at least 1"), ({"top_k": "two"}, "whole number"),
    ({"top_k": 2.5}, "whole number"), ({"top_k": True}, "whole number"), ({"allowed_languages": ["en", "xx"]}, "xx"),
    ({"allowed_languages": 5}, "list"), ({"allowed_languages": ["en", 3]}, "list")])
def test_bad_options_are_400_before_any_model_call(make_settings, options, words) -> None:
    detector = ScriptedDetector(make_settings(), [])
    with pytest.raises(BadRequest, match=words):
        detector({"audio": voice(1), **options})
    assert detector.windows_seen == []


@pytest.mark.parametrize("audio, error", [
    (np.zeros(SR, np.float32), UnprocessableEntity), (np.array([0.5], np.float32), UnprocessableEntity),
    (np.full(SR, np.nan, np.float32), InvalidAudio), (None, InvalidAudio), (np.zeros((2, SR), np.float32), InvalidAudio)])
def test_unanalysable_audio(make_settings, audio, error) -> None:
    detector = ScriptedDetector(make_settings(), [])
    with pytest.raises(error):
        detector({"audio": audio})
    assert detector.windows_seen == []


def test_model_id_comes_from_settings(make_settings) -> None:
    detector = ScriptedDetector(make_settings(whisper_model="/models/whisper-tiny"), [[0, 0, 0]])
    assert detector({"audio": voice(1)})["model"] == "/models/whisper-tiny"
    assert detector.describe() == {"backend": "scripted", "model": "/models/whisper-tiny",
                                   "model_name": "local folder whisper-tiny", "languages": 3}  # public: no path
