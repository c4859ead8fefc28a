"""Work bounded by what a text says: MAX_SPEECH_SECONDS after normalisation, punctuation runs said once."""
from __future__ import annotations

import numpy as np
import pytest

from backend.api.schemas.tts import validate_request
from backend.errors import SpeechTooLong
from backend.pipelines.tts.length import TOKENS_PER_SECOND, check_speech_length, speech_seconds
from backend.pipelines.tts.normalize import collapse_punctuation, normalize
from backend.pipelines.tts.pipeline import KokoroPipeline
from backend.pipelines.tts.voices import VoiceBank
from config import build_settings

NUMERIC_RUN = "9" * 400
DIGIT_GROUPS = " ".join(["123456789012345678901234567890"] * 20)
DOTS = "a" + "." * 4000
PROSE = ("The committee met on a grey morning to talk about the bridge, the budget and the long delay. "
         "Nobody wanted to be the first to speak, so the chair read the letter aloud, slowly. ") * 4


class CountingKokoro(KokoroPipeline):
    """The real preprocess (normalisation, espeak G2P, pieces); synthesis only counts its calls."""

    backend = "counting"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.calls = 0

    def load(self) -> None:
        from scripts.checkpoints.kokoro import kokoro_config

        self._load_phonemizer()
        self.vocab = kokoro_config("tiny")["vocab"]
        pack = np.zeros((510, 1, 256), dtype=np.float32)
        self.voices = VoiceBank(["af_test"], lambda name: pack)

    def _synthesize(self, token_ids, style, speed, last=True) -> np.ndarray:
        self.calls += 1
        return np.zeros(240, dtype=np.float32)


@pytest.fixture(scope="module")
def pipe():
    pipeline = CountingKokoro(build_settings(prometheus_multiproc_dir=None, max_text_chars=5000,
                                             max_speech_seconds=90))
    pipeline.load()
    return pipeline


def tokens_of(pipe, text: str, **kwargs) -> int:
    settings = build_settings(prometheus_multiproc_dir=None, max_text_chars=5000, max_speech_seconds=0)
    features = CountingKokoro.preprocess(_with_settings(pipe, settings), validate_request(settings, text=text,
                                                                                          fmt="wav", **kwargs))
    return sum(len(item.token_ids) for item in features.plan if hasattr(item, "token_ids"))


def _with_settings(pipe, settings):
    clone = CountingKokoro(settings)
    clone.vocab, clone.voices, clone.phonemizer = pipe.vocab, pipe.voices, pipe.phonemizer
    return clone


@pytest.mark.parametrize("text", [NUMERIC_RUN, DIGIT_GROUPS], ids=["nines", "digit-groups"])
def test_a_short_text_that_expands_into_minutes_of_speech_is_refused_before_synthesis(pipe, text) -> None:
    assert len(text) <= 620
    with pytest.raises(SpeechTooLong) as caught:
        pipe.preprocess(validate_request(pipe.settings, text=text, fmt="wav"))
    error = caught.value
    assert error.status == 400 and error.details["field"] == "input"
    assert "MAX_SPEECH_SECONDS" in error.message and "90 s" in error.message
    assert error.details["speech_seconds"] > 90 and error.details["max_speech_seconds"] == 90
    assert f"{error.details['phoneme_tokens']} phoneme tokens" in error.message
    assert pipe.calls == 0  # nothing was synthesised


def test_the_figure_in_the_refusal_is_the_tokens_over_the_rate(pipe) -> None:
    tokens = tokens_of(pipe, NUMERIC_RUN)
    assert tokens > 90 * TOKENS_PER_SECOND
    with pytest.raises(SpeechTooLong) as caught:
        pipe.preprocess(validate_request(pipe.settings, text=NUMERIC_RUN, fmt="wav"))
    assert caught.value.details["phoneme_tokens"] == tokens
    assert caught.value.details["speech_seconds"] == round(tokens / TOKENS_PER_SECOND, 1)


def test_a_run_of_dots_is_one_mark_and_costs_a_few_tokens(pipe) -> None:
    assert normalize(DOTS) == "a…"
    assert tokens_of(pipe, DOTS) <= 4
    pipe.preprocess(validate_request(pipe.settings, text=DOTS, fmt="wav"))  # accepted: a word and a pause


def test_prose_within_the_bound_is_served(pipe) -> None:
    features = pipe.preprocess(validate_request(pipe.settings, text=PROSE, fmt="wav"))
    assert features.plan and speech_seconds(tokens_of(pipe, PROSE), 1.0) < 90


def test_a_slower_voice_says_the_same_tokens_for_longer() -> None:
    assert speech_seconds(150, 0.5) == pytest.approx(2 * speech_seconds(150, 1.0)) == pytest.approx(20.0)
    check_speech_length(150, 1.0, max_seconds=10)  # exactly at the limit: served
    with pytest.raises(SpeechTooLong, match="about 20 s of speech"):
        check_speech_length(150, 0.5, max_seconds=10)
    check_speech_length(10**6, 1.0, max_seconds=0)  # 0 = no bound


@pytest.mark.parametrize(("text", "said"), [
    ("Really?!?!", "Really?"), ("Stop!!!", "Stop!"), ("Wait.....", "Wait…"), ("Wait...", "Wait..."),
    ("one,, two;; three", "one, two; three"), ("a -------- b", "a - b"), ("a -- b", "a -- b"),
    ("***bold***", "*bold*"), ("x" + "!" * 5000, "x!"), ("3.5 and 1,234", "3.5 and 1,234"),
])
def test_punctuation_runs_collapse(text, said) -> None:
    assert collapse_punctuation(text) == said
