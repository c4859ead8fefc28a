"""The backend-independent half of AI-voice detection: labels, windows, softmax vs sigmoid, aggregation.

A scripted backend (its logits per window are given) isolates the base class's arithmetic; the
torch and ONNX backends are tested against the real models in their own test modules.
"""
from __future__ import annotations

import numpy as np
import pytest

from backend.errors import InvalidAudio, ModelUnavailable, UnprocessableEntity
from backend.pipelines.ai_voice.detector import AIVoiceDetector, synthetic_labels, window_samples_for
from tests.fakes import ScriptedWindows

SR = 16000
ASVSPOOF = {0: "bonafide", 1: "spoof"}


class ScriptedDetector(ScriptedWindows, AIVoiceDetector):
    """A backend whose logits for successive windows are given; records the windows it was shown."""

    def __init__(self, settings, logits, id2label=ASVSPOOF, max_length: int = 256, problem_type=None) -> None:
        super().__init__(settings)
        self.follow(logits)
        self.configure(id2label, max_length=max_length, problem_type=problem_type)


def voice(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def sigmoid(x: float) -> float:
    return 1 / (1 + np.exp(-x))


# --- which labels mean synthetic --------------------------------------------------------------------------
def test_labels_from_id2label() -> None:
    assert synthetic_labels(ASVSPOOF) == ["spoof"]
    assert synthetic_labels({0: "real", 1: "fake"}) == ["fake"]
    assert synthetic_labels({0: "human", 1: "AI-generated voice"}) == ["AI-generated voice"]
    audioset = {0: "Speech", 1: "Speech synthesizer", 2: "Synthesizer", 3: "Music"}
    assert synthetic_labels(audioset) == ["Speech synthesizer"]  # the instrument is not a synthetic voice


def test_configured_labels_win_and_are_checked() -> None:
    assert synthetic_labels(ASVSPOOF, ["BONAFIDE"]) == ["bonafide"]
    with pytest.raises(ValueError, match="not among the model's labels"):
        synthetic_labels(ASVSPOOF, ["deepfake"])
    with pytest.raises(ValueError, match="AI_VOICE_LABELS"):
        synthetic_labels({0: "dog", 1: "cat"})
    with pytest.raises(ValueError, match="AI_VOICE_LABELS"):
        synthetic_labels({0: "fake", 1: "spoof"})  # every label synthetic: the score would always be 1


def test_configure_fails_the_load_with_model_unavailable(make_settings) -> None:
    with pytest.raises(ModelUnavailable, match="AI_VOICE_LABELS"):
        ScriptedDetector(make_settings(), [], id2label={0: "dog", 1: "cat"})
    with pytest.raises(ModelUnavailable, match="not among"):
        ScriptedDetector(make_settings(ai_voice_labels="deepfake"), [])


def test_window_length_in_samples() -> None:
    assert window_samples_for(1024) == 400 + 1023 * 160  # 10.255 s: exactly 1024 Kaldi frames
    assert window_samples_for(256) == 41200


# --- scores ---------------------------------------------------------------------------------------------------
def test_single_label_softmax_per_window_then_mean_and_max(make_settings) -> None:
    logits = [[0.0, 2.0], [1.0, 0.0], [0.0, 0.0]]
    detector = ScriptedDetector(make_settings(), logits)
    n = int(5.0 * SR)  # 2.575 s windows every 1.2875 s, last flush: starts 0, 20600, 38800
    result = detector({"audio": voice(5.0)})
    per_window = [np.exp(2) / (1 + np.exp(2)), 1 / (1 + np.e), 0.5]
    assert result["windows"] == 3 and detector.windows_seen == [41200] * 3
    assert result["window_scores"] == pytest.approx(per_window, abs=1e-6)
    assert result["score_mean"] == pytest.approx(np.mean(per_window), abs=1e-6) == result["score"]
    assert result["score_max"] == pytest.approx(max(per_window), abs=1e-6)
    assert result["activation"] == "softmax" and result["aggregation"] == "mean"
    assert result["seconds_analysed"] == pytest.approx(n / SR) and result["synthetic_labels"] == ["spoof"]
    assert result["is_ai_generated"] is True and result["threshold"] == 0.5


def test_multi_label_sigmoid_max_over_synthetic_labels(make_settings) -> None:
    labels = {0: "Speech", 1: "Speech synthesizer", 2: "Music"}
    detector = ScriptedDetector(make_settings(), [[5.0, -1.0, 3.0]], id2label=labels,
                                problem_type="multi_label_classification")
    result = detector({"audio": voice(1.0)})
    assert result["activation"] == "sigmoid" and result["score"] == pytest.approx(sigmoid(-1.0), abs=1e-6)
    assert result["is_ai_generated"] is False


def test_wide_classifier_without_problem_type_is_multi_label(make_settings) -> None:
    labels = {i: f"class {i}" for i in range(527)}
    labels[7] = "Speech synthesizer"
    logits = np.zeros(527)
    logits[7] = 2.0
    detector = ScriptedDetector(make_settings(), [logits], id2label=labels)
    assert detector({"audio": voice(1.0)})["score"] == pytest.approx(sigmoid(2.0), abs=1e-6)


def test_several_synthetic_labels_add_up_under_softmax(make_settings) -> None:
    labels = {0: "human", 1: "tts", 2: "deepfake"}
    detector = ScriptedDetector(make_settings(), [[0.0, 0.0, 0.0]], id2label=labels,
                                problem_type="single_label_classification")
    result = detector({"audio": voice(1.0)})
    assert result["synthetic_labels"] == ["tts", "deepfake"] and result["score"] == pytest.approx(2 / 3, abs=1e-6)


def test_threshold_from_settings_is_inclusive(make_settings) -> None:
    detector = ScriptedDetector(make_settings(ai_voice_threshold=0.5), [[0.0, 0.0]])
    assert detector({"audio": voice(1.0)})["is_ai_generated"] is True  # 0.5 >= 0.5
    strict = ScriptedDetector(make_settings(ai_voice_threshold=0.9), [[0.0, 1.0]])
    result = strict({"audio": voice(1.0)})
    assert result["threshold"] == 0.9 and result["is_ai_generated"] is False


def test_long_audio_windows_are_capped_and_spread(make_settings) -> None:
    detector = ScriptedDetector(make_settings(), [[0.0, 0.0]] * 24)
    result = detector({"audio": voice(120.0)})
    assert result["windows"] == detector.max_windows == 24
    assert result["seconds_analysed"] == pytest.approx(24 * 41200 / SR, abs=1e-3)
    assert result["hop_s"] == pytest.approx(1.2875, abs=1e-3) and result["window_s"] == pytest.approx(2.575)


@pytest.mark.parametrize("audio, error", [
    (np.zeros(SR, np.float32), UnprocessableEntity), (np.array([0.5], np.float32), UnprocessableEntity),
    (np.full(SR, np.inf, np.float32), InvalidAudio), ("audio", InvalidAudio)])
def test_unanalysable_audio(make_settings, audio, error) -> None:
    detector = ScriptedDetector(make_settings(), [])
    with pytest.raises(error):
        detector({"audio": audio})
    assert detector.windows_seen == []
