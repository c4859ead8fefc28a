"""backend.pipelines.tts.pieces: long text cut under the token limit at sentence, clause and word boundaries."""
from __future__ import annotations

import pytest

from backend.pipelines.tts.g2p import Phonemizer
from backend.pipelines.tts.pieces import MAX_TOKENS, count_tokens, plan_pieces


@pytest.fixture(scope="module")
def vocab() -> dict[str, int]:
    from scripts.checkpoints.kokoro import kokoro_config
    return kokoro_config("tiny")["vocab"]


@pytest.fixture(scope="module")
def english() -> Phonemizer:
    from config import build_settings
    return Phonemizer(build_settings(prometheus_multiproc_dir=None))


LONG_TEXT = " ".join(
    f"Sentence number {i} talks about the weather, the sea and the mountains; it goes on for a while." for i in range(40))


def test_long_text_is_split_under_the_token_limit(english, vocab) -> None:
    pieces = plan_pieces(LONG_TEXT, english, vocab)
    assert len(pieces) > 3
    assert all(0 < count_tokens(p, vocab) <= MAX_TOKENS for p in pieces)
    assert pieces[0] == english("Sentence number 0 talks about the weather, the sea and the mountains; it goes on for "
                                "a while.")  # the first sentence alone: first audio comes early
    # Nothing lost: every sentence's phonemes are in the pieces, in order.
    joined = " ".join(pieces)
    assert count_tokens(joined, vocab) >= sum(count_tokens(english(s), vocab) for s in LONG_TEXT.split(". ")) - 40


def test_a_smaller_piece_limit_is_honoured(english, vocab) -> None:
    """TTS_PIECE_TOKENS: activation memory grows with the piece, so the server may cap it lower."""
    pieces = plan_pieces(LONG_TEXT, english, vocab, limit=60)
    assert all(0 < count_tokens(p, vocab) <= 60 for p in pieces)
    assert len(pieces) > len(plan_pieces(LONG_TEXT, english, vocab))


def test_a_sentence_without_punctuation_is_cut_at_words(english, vocab) -> None:
    text = " ".join(["banana"] * 150)  # one 'sentence' of ~900 phoneme tokens
    pieces = plan_pieces(text, english, vocab)
    assert len(pieces) >= 2
    assert all(count_tokens(p, vocab) <= MAX_TOKENS for p in pieces)
    word = english("banana")
    assert all(p == " ".join([word] * (p.count(" ") + 1)) for p in pieces)  # whole words only


def test_a_giant_word_is_cut_anywhere(vocab) -> None:
    pieces = plan_pieces("x", lambda _: "a" * 1200, vocab)
    assert [count_tokens(p, vocab) for p in pieces] == [510, 510, 180]
