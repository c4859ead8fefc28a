"""KokoroPipeline's run loop with a scripted backend: pauses become silence, joins get their pause, memory hooks fire."""
from __future__ import annotations

import numpy as np
import pytest

from backend.api.schemas.tts import validate_request
from backend.pipelines.tts.joins import KEEP_S
from backend.pipelines.tts.pipeline import SAMPLE_RATE_HZ, KokoroPipeline
from backend.pipelines.tts.voices import VoiceBank
from config import build_settings

RATE = SAMPLE_RATE_HZ


class ScriptedKokoro(KokoroPipeline):
    """Each piece 'speaks' 0.25 s of silence, a 0.5 s tone, 0.7 s of silence: Kokoro's padding, exactly."""

    backend = "scripted"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.calls: list[tuple[int, bool]] = []
        self.released = 0

    def load(self) -> None:
        from scripts.checkpoints.kokoro import kokoro_config

        self._load_phonemizer()
        self.vocab = kokoro_config("tiny")["vocab"]
        pack = np.random.default_rng(0).standard_normal((510, 1, 256)).astype(np.float32)
        self.voices = VoiceBank(["af_test"], lambda name: pack)

    def _synthesize(self, token_ids, style, speed, last=True) -> np.ndarray:
        self.calls.append((len(token_ids), last))
        tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(int(0.5 * RATE)) / RATE)
        return np.concatenate([np.zeros(int(0.25 * RATE)), tone, np.zeros(int(0.7 * RATE))]).astype(np.float32)

    def _release(self) -> None:
        self.released += 1


@pytest.fixture
def pipe():
    pipeline = ScriptedKokoro(build_settings(prometheus_multiproc_dir=None, tts_first_piece_tokens=0))
    pipeline.load()
    return pipeline


def seconds(blocks) -> list[float]:
    return [round(len(b) / RATE, 3) for b in blocks]


def test_pieces_are_trimmed_and_joined_by_boundary(pipe) -> None:
    settings = pipe.settings
    features = pipe.preprocess(validate_request(settings, text="One. [pause:1.2s] Two.\n\nThree.", fmt="wav"))
    blocks = list(pipe.run(features).blocks)
    tone = 0.5 + 2 * KEEP_S
    assert seconds(blocks) == pytest.approx([tone, 1.2, tone + settings.tts_pause_paragraph_s - 2 * KEEP_S, tone],
                                            abs=0.011)
    assert [last for _, last in pipe.calls] == [False, False, True]  # only the last piece may release memory
    assert pipe.released == 0


def test_a_stream_closed_early_releases_what_the_backend_holds(pipe) -> None:
    features = pipe.preprocess(validate_request(pipe.settings, text="One. [pause:0.1s] Two. [pause:0.1s] Three.",
                                                fmt="wav"))
    blocks = pipe.run(features).blocks
    next(blocks)
    blocks.close()  # the client went away after the first piece
    assert pipe.released == 1 and len(pipe.calls) == 1


def test_untrimmed_joins_keep_the_models_padding(pipe) -> None:
    pipe.settings = build_settings(prometheus_multiproc_dir=None, tts_trim_silence=False)
    features = pipe.preprocess(validate_request(pipe.settings, text="One. [pause:0.5s] Two.", fmt="wav"))
    assert seconds(pipe.run(features).blocks) == [1.45, 0.5, 1.45]


def test_an_answer_sent_whole_is_planned_without_a_short_first_piece() -> None:
    from dataclasses import replace

    pipeline = ScriptedKokoro(build_settings(prometheus_multiproc_dir=None, tts_first_piece_tokens=16))
    pipeline.load()
    request = validate_request(pipeline.settings, text="The kettle is on, come and sit down by the fire.", fmt="wav")
    streamed = pipeline.preprocess(request)
    whole = pipeline.preprocess(replace(request, whole=True))
    assert len(streamed.plan) == 2  # a short first piece for the listener who hears it early
    assert len(whole.plan) == 1  # one file: nobody does, so one model call
    assert len(whole.plan[0].token_ids) == sum(len(piece.token_ids) for piece in streamed.plan) + 1  # + the space
