"""backend.pipelines.tts.pieces: text cut under the token limit, short first, each piece tagged with its boundary."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    assert all(size <= 150 for size in sizes) and max(sizes) >= 90
    # The first sentence (~90 tokens) is cut at its first clause mark (46 tokens: past 30, so no earlier
    # phrase qualifies, and never between words); later pieces end at marks too.
    assert pieces[0].phonemes == english("Sentence number 0 talks about the weather,")
    assert pieces[0].boundary == "clause" and all(p.boundary != "word" for p in pieces)


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
    # Over twice a first limit of 20, but it has no clause mark: said whole rather than cut between words.
    assert pieces_of(plan_pieces(parse(text), english, vocab, limit=150, first_limit=20)) == \
        [Piece(english(text), "end")]


def test_the_first_piece_ends_at_a_phrase_not_between_words(english, vocab) -> None:
    # "The kettle is on," is 17 tokens: over a first limit of 12 but within half as much again, so the first
    # piece is that clause, not "The kettle is" cut at 12.
    pieces = pieces_of(plan_pieces(parse("The kettle is on, come and sit down. We can talk about the weather."),
                                   english, vocab, limit=100, first_limit=12))
    assert pieces[0].phonemes == english("The kettle is on,") and pieces[0].boundary == "clause"
    # No clause mark: the first sentence is the first piece, whole (a cut between words is heard).
    text = "The big old kettle in the kitchen is on so come and sit down with us now. We can talk."
    pieces = pieces_of(plan_pieces(parse(text), english, vocab, limit=100, first_limit=12))
    assert pieces[0].phonemes == english("The big old kettle in the kitchen is on so come and sit down with us now.")
    assert pieces[0].boundary == "sentence"


WORDS = st.sampled_from(["the", "kettle", "is", "on", "come", "and", "sit", "down", "we", "can", "talk", "about",
                         "weather", "tomorrow", "afternoon", "a", "long", "walk", "by", "sea"])
SENTENCES = st.lists(st.lists(st.tuples(WORDS, st.booleans()), min_size=1, max_size=30), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sentences=SENTENCES, limit=st.integers(20, 200), first_limit=st.integers(0, 40))
def test_pieces_are_cut_between_words_only_in_sentences_too_long_for_a_piece(vocab, sentences, limit,
                                                                             first_limit) -> None:
    """Invariant: every phoneme once, in order, no piece over the limit, and a piece ends between words only
    inside a sentence longer than the limit (words here are their own phonemes: str is the phonemiser)."""
    texts = [" ".join(word + ("," if comma else "") for word, comma in words).rstrip(",") + "."
             for words in sentences]
    plan = plan_pieces(parse(" ".join(texts)), str, vocab, limit=limit, first_limit=first_limit)
    pieces = pieces_of(plan)
    assert "".join(p.phonemes.replace(" ", "") for p in pieces) == "".join(texts).replace(" ", "")
    assert all(count_tokens(p.phonemes, vocab) <= limit for p in pieces)
    if all(count_tokens(text, vocab) <= limit for text in texts):
        assert all(p.boundary != "word" for p in pieces)


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
