"""backend.pipelines.tts.pieces: text cut under the token limit, short first, each piece tagged with its boundary."""
from __future__ import annotations

import pytest

from backend.pipelines.tts.g2p import Phonemizer
from backend.pipelines.tts.markup import Pause, parse, parse_phonemes
from backend.pipelines.tts.pieces import (
    MAX_TOKENS,
    Piece,
    contended_cut,
    count_tokens,
    cut_marks,
    piece_limit,
    plan_pieces,
)


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


def pieces_of(plan) -> list[Piece]:
    return [item for item in plan if isinstance(item, Piece)]


def test_long_text_is_split_under_the_token_limit(english, vocab) -> None:
    plan = plan_pieces(parse(LONG_TEXT), english, vocab)
    pieces = pieces_of(plan)
    assert len(pieces) > 3
    assert all(0 < count_tokens(p.phonemes, vocab) <= MAX_TOKENS for p in pieces)
    first = "Sentence number 0 talks about the weather, the sea and the mountains; it goes on for a while."
    assert pieces[0].phonemes.startswith(english(first)) and pieces[0].boundary == "sentence"
    # Nothing lost: every sentence's phonemes are in the pieces, in order.
    assert " ".join(p.phonemes for p in pieces) == " ".join(english(s.strip()) for s in
                                                           LONG_TEXT.replace(". ", ".\n").splitlines())
    assert pieces[-1].boundary == "end"


def test_a_smaller_piece_limit_is_honoured(english, vocab) -> None:
    """TTS_PIECE_TOKENS: activation memory grows with the piece, so the server may cap it lower."""
    pieces = pieces_of(plan_pieces(parse(LONG_TEXT), english, vocab, limit=60))
    assert all(0 < count_tokens(p.phonemes, vocab) <= 60 for p in pieces)
    assert len(pieces) > len(pieces_of(plan_pieces(parse(LONG_TEXT), english, vocab)))


@pytest.mark.parametrize("index, expected", [(0, 30), (1, 60), (2, 120), (3, 150), (9, 150)])
def test_pieces_start_short_and_double(index, expected) -> None:
    assert piece_limit(index, 150, 30) == expected
    assert piece_limit(index, 150, 0) == 150  # 0: no short start


def test_the_first_piece_is_a_short_clause_and_later_ones_grow(english, vocab) -> None:
    pieces = pieces_of(plan_pieces(parse(LONG_TEXT), english, vocab, limit=150, first_limit=30))
    sizes = [count_tokens(p.phonemes, vocab) for p in pieces]
    assert all(size <= piece_limit(i, 150, 30) for i, size in enumerate(sizes[1:], start=1))
    assert sizes[0] <= 45 and max(sizes) >= 90  # a clause may end the first piece up to half as much again
    assert pieces[0].boundary in ("clause", "word")  # the first sentence (~90 tokens) was cut
    assert english("Sentence number 0 talks about the weather,").startswith(pieces[0].phonemes.split(",")[0])


def test_long_sentences_are_cut_at_clauses_before_words(english, vocab) -> None:
    text = ("The committee met on a cold morning, and after a long discussion about the budget, the schedule, "
            "the new building and the parking spaces, it decided to postpone everything until the spring.")
    pieces = pieces_of(plan_pieces(parse(text), english, vocab, limit=60))
    assert [p.boundary for p in pieces[:-1]] == ["clause"] * (len(pieces) - 1) and pieces[-1].boundary == "end"
    assert all(p.phonemes.rstrip()[-1] in ",;:—–" for p in pieces[:-1])


def test_a_sentence_without_punctuation_is_cut_at_words(english, vocab) -> None:
    text = " ".join(["banana"] * 150)  # one 'sentence' of ~900 phoneme tokens
    pieces = pieces_of(plan_pieces(parse(text), english, vocab))
    assert len(pieces) >= 2 and all(count_tokens(p.phonemes, vocab) <= MAX_TOKENS for p in pieces)
    word = english("banana")
    assert all(p.phonemes == " ".join([word] * (p.phonemes.count(" ") + 1)) for p in pieces)  # whole words only
    assert [p.boundary for p in pieces] == ["word"] * (len(pieces) - 1) + ["end"]


def test_a_giant_word_is_cut_anywhere(vocab) -> None:
    pieces = pieces_of(plan_pieces(parse("x"), lambda _: "a" * 1200, vocab))
    assert [count_tokens(p.phonemes, vocab) for p in pieces] == [510, 510, 180]


def test_paragraphs_and_pauses_are_never_packed_over(english, vocab) -> None:
    text = "One. Two.\n\nThree. [pause:1.5s] Four."
    plan = plan_pieces(parse(text), english, vocab)
    shape = [(item.phonemes, item.boundary) if isinstance(item, Piece) else item for item in plan]
    assert shape == [(f"{english('One.')} {english('Two.')}", "paragraph"), (english("Three."), "pause"),
                     Pause(1.5), (english("Four."), "end")]


def test_an_override_is_spoken_as_given_without_g2p(english, vocab) -> None:
    seen: list[str] = []

    def spy(text: str) -> str:
        seen.append(text)
        return english(text)

    plan = plan_pieces(parse("Say [Kokoro](/kˈOkəɹO/) now."), spy, vocab)
    assert pieces_of(plan)[0].phonemes == f"{english('Say')} kˈOkəɹO {english('now.')}"
    assert not any("Kokoro" in text for text in seen)


def test_phoneme_input_is_cut_at_its_own_punctuation(vocab) -> None:
    plan = plan_pieces(parse_phonemes("həlˈO. [pause:200ms] wˈɜɹld!"), str, vocab)
    assert plan == [Piece("həlˈO.", "pause"), Pause(0.2), Piece("wˈɜɹld!", "end")]


def test_a_short_text_is_one_piece_even_with_a_short_start(english, vocab) -> None:
    text = "The quick brown fox jumps over the lazy dog."  # ~49 tokens: under twice the first limit
    assert pieces_of(plan_pieces(parse(text), english, vocab, limit=150, first_limit=30)) == \
        [Piece(english(text), "end")]
    assert len(pieces_of(plan_pieces(parse(text), english, vocab, limit=150, first_limit=20))) == 2


def test_the_first_piece_ends_at_a_phrase_not_between_words(english, vocab) -> None:
    # "The kettle is on," is 17 tokens: over a first limit of 12 but within half as much again, so the first
    # piece is that clause, not "The kettle is" cut at 12.
    pieces = pieces_of(plan_pieces(parse("The kettle is on, come and sit down. We can talk about the weather."),
                                   english, vocab, limit=100, first_limit=12))
    assert pieces[0].phonemes == english("The kettle is on,") and pieces[0].boundary == "clause"
    # No clause close enough: a cut between words within the limit, as before.
    pieces = pieces_of(plan_pieces(parse("The big old kettle in the kitchen is on so come and sit down with us now."),
                                   english, vocab, limit=100, first_limit=12))
    assert count_tokens(pieces[0].phonemes, vocab) <= 12 and pieces[0].boundary == "word"


def ids_of(phonemes: str, vocab: dict[str, int]) -> list[int]:
    return [vocab[ch] for ch in phonemes if ch in vocab]


def cut_text(phonemes: str, cap: int, vocab: dict[str, int]) -> tuple[str, str, str] | None:
    """(head, boundary, tail) as phonemes, or None: contended_cut on the ids, read back through the vocab."""
    ids = ids_of(phonemes, vocab)
    at = contended_cut(ids, cap, *cut_marks(vocab))
    if at is None:
        return None
    back = {v: k for k, v in vocab.items()}
    index, boundary = at
    return "".join(back[i] for i in ids[:index]), boundary, "".join(back[i] for i in ids[index + 1:])


def test_a_contended_piece_that_fits_or_has_no_word_gap_is_not_cut(vocab) -> None:
    assert cut_text("ðə kˈɛtəl ɪz ˈɔn.", 40, vocab) is None  # fits
    assert cut_text("ðə kˈɛtəl ɪz ˈɔn.", 0, vocab) is None  # 0: never cut
    assert cut_text("a" * 60, 40, vocab) is None  # one giant word: nothing to cut between


def test_a_contended_piece_is_cut_at_a_sentence_before_a_clause_before_a_word(vocab) -> None:
    sentence = "ðə kˈɛtəl ɪz ˈɔn. kˈʌm ænd sˈɪt dˈaʊn, plˈiz, ænd hæv sˈʌm tˈi nˈaʊ"
    head, boundary, tail = cut_text(sentence, 40, vocab)
    assert (head, boundary) == ("ðə kˈɛtəl ɪz ˈɔn.", "sentence")
    assert head + " " + tail == sentence  # nothing lost, the space at the cut dropped
    clauses = "kˈʌm ænd sˈɪt dˈaʊn, plˈiz, ænd hæv sˈʌm tˈi wɪð ˈʌs nˈaʊ"
    head, boundary, _ = cut_text(clauses, 40, vocab)
    assert (head, boundary) == ("kˈʌm ænd sˈɪt dˈaʊn, plˈiz,", "clause")
    words = "kˈʌm ænd sˈɪt dˈaʊn ænd hæv sˈʌm tˈi wɪð ˈʌs nˈaʊ ænd lˈeɪtəɹ"
    head, boundary, tail = cut_text(words, 40, vocab)
    assert boundary == "word" and head + " " + tail == words


def test_a_contended_piece_is_cut_into_parts_of_about_equal_size(vocab) -> None:
    words = " ".join(["sˈʌm tˈi"] * 11)  # 98 tokens: three parts of at most 33, not 40 + 40 + 16
    ids = ids_of(words, vocab)
    index, _ = contended_cut(ids, 40, *cut_marks(vocab))
    assert len(ids) == 98 and 17 <= index <= 33
    rest = ids[index + 1:]
    second, _ = contended_cut(rest, 40, *cut_marks(vocab))
    assert 17 <= second <= 40 and len(rest) - second - 1 <= 40
