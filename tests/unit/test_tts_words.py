"""backend.pipelines.tts.words: written words matched to phonemes, carried through pieces, timed by durations."""
from __future__ import annotations

import pytest

from backend.pipelines.tts.g2p import Phonemizer
from backend.pipelines.tts.markup import parse, parse_phonemes
from backend.pipelines.tts.pieces import Piece, plan_pieces
from backend.pipelines.tts.pipeline import spoken_words
from backend.pipelines.tts.words import (FRAME_SAMPLES, WordSpan, WordTime, WordTrack, align, own_each, token_spans,
                                         word_times, written_words)


@pytest.fixture(scope="module")
def vocab() -> dict[str, int]:
    from scripts.checkpoints.kokoro import kokoro_config
    return kokoro_config("tiny")["vocab"]


@pytest.fixture(scope="module")
def english() -> Phonemizer:
    from config import build_settings
    return Phonemizer(build_settings(prometheus_multiproc_dir=None))


def owned_text(phonemes: str, owners: list[int], track: WordTrack) -> dict[str, str]:
    """Each word's phonemes, as the owners give them."""
    out: dict[str, str] = {}
    for ch, owner in zip([c for c in phonemes if not c.isspace()], owners, strict=True):
        if owner >= 0:
            out[track.words[owner]] = out.get(track.words[owner], "") + ch
    return out


def test_written_words_drop_the_punctuation_around_them() -> None:
    assert written_words("Well, “it's” fine — isn't it? 3.5 (yes)") == ["Well", "it's", "fine", "isn't", "it", "3.5",
                                                                        "yes"]


def test_one_phoneme_word_per_word_is_matched_in_order_and_marks_are_nobodys() -> None:
    track = WordTrack()
    owners = align("Hello, world.", "həlˈO, wˈɜɹld.", track)
    assert track.words == ["Hello", "world"]
    assert owned_text("həlˈO, wˈɜɹld.", owners, track) == {"Hello": "həlˈO", "world": "wˈɜɹld"}
    assert owners[5] == -1 and owners[-1] == -1  # the comma and the full stop


def test_words_the_g2p_joined_share_their_phonemes_by_weight() -> None:
    track = WordTrack()
    alone = {"sit": "sˈɪt", "in": "ɪn", "the": "ðə", "sun": "sˈʌn"}
    owners = align("sit in the sun", "sˈɪt ɪnðə sˈʌn", track, weigh=alone.__getitem__)
    assert owned_text("sˈɪt ɪnðə sˈʌn", owners, track) == {"sit": "sˈɪt", "in": "ɪn", "the": "ðə", "sun": "sˈʌn"}


def test_a_word_the_g2p_split_owns_all_of_its_phonemes() -> None:
    track = WordTrack()
    alone = {"a": "ɐ", "well-known": "wɛl nˈoʊn", "fact": "fˈækt"}
    owners = align("a well-known fact", "ɐ wɛl nˈoʊn fˈækt", track, weigh=alone.__getitem__)
    assert owned_text("ɐ wɛl nˈoʊn fˈækt", owners, track) == {"a": "ɐ", "well-known": "wɛlnˈoʊn", "fact": "fˈækt"}


def test_phoneme_input_makes_each_phoneme_word_a_word() -> None:
    track = WordTrack()
    assert own_each("hˈɛlO, wˈɜɹld", track) == [0] * 5 + [-1] + [1] * 6
    assert track.words == ["hˈɛlO", "wˈɜɹld"]


def test_token_spans_count_only_characters_the_model_knows() -> None:
    vocab = {ch: i for i, ch in enumerate("ab c")}
    # "ab? c": '?' is not a token; the space is one.
    spans = token_spans("ab? c", [0, 0, -1, 1], vocab)
    assert spans == (WordSpan(0, 0, 2), WordSpan(1, 3, 4))


def test_word_times_follow_durations_the_trim_and_the_offset() -> None:
    spans = [WordSpan(0, 0, 2), WordSpan(1, 3, 4)]
    durations = [4, 2, 3, 1, 5, 6]  # pad, 4 tokens, pad (frames)
    times = word_times(spans, durations, offset=1000, cut=2 * FRAME_SAMPLES, length=12 * FRAME_SAMPLES, early=0)
    frame = FRAME_SAMPLES
    assert times == [WordTime(0, 1000 + 2 * frame, 1000 + 7 * frame), WordTime(1, 1000 + 8 * frame, 1000 + 12 * frame)]


def test_words_are_placed_where_they_are_heard_inside_the_kept_audio() -> None:
    spans = [WordSpan(0, 0, 2), WordSpan(1, 3, 4)]
    durations = [4, 2, 3, 1, 5, 6]
    frame = FRAME_SAMPLES
    times = word_times(spans, durations, offset=0, cut=2 * frame, length=12 * frame, early=3 * frame)
    assert times == [WordTime(0, 0, 4 * frame), WordTime(1, 5 * frame, 10 * frame)]  # 3 frames earlier, from 0
    squeezed = word_times([WordSpan(0, 0, 1)], [4, 1, 1], offset=0, cut=2 * frame, length=3 * frame, early=4 * frame)
    assert squeezed == [WordTime(0, 0, frame)]  # moved before the kept audio: starts with it, keeps its length


def test_a_word_cut_across_pieces_is_one_caption() -> None:
    words = spoken_words(["one", "giant"], [WordTime(0, 0, 2400), WordTime(1, 2400, 4800), WordTime(1, 6000, 9600)])
    assert [(w.word, w.start_time, w.end_time) for w in words] == [("one", 0.0, 0.1), ("giant", 0.1, 0.4)]


def test_owners_travel_through_pieces_in_text_order(english, vocab) -> None:
    text = ("The kettle is on, come and sit down. [pause:0.4s] We talked about the weather, the sea, the mountains "
            "and the long road home; it went on for a while, as such talks do. [Kokoro](/kˈOkəɹO/) speaks.")
    track = WordTrack()
    plan = plan_pieces(parse(text), english, vocab, limit=40, first_limit=10, track=track,
                       label=lambda written, phonemes: align(written, phonemes, track, english))
    pieces = [item for item in plan if isinstance(item, Piece)]
    assert len(pieces) >= 4
    order = []
    for piece in pieces:
        assert len(piece.owners) == sum(1 for ch in piece.phonemes if not ch.isspace())
        spans = token_spans(piece.phonemes, piece.owners, vocab)
        order += [span.word for span in spans]
    assert order == sorted(order) and set(order) == set(range(len(track.words)))  # every word, once, in order
    assert track.words == written_words(text.replace("[pause:0.4s]", "").replace("[Kokoro](/kˈOkəɹO/)", "Kokoro"))


def test_phoneme_input_is_tracked_too(vocab) -> None:
    track = WordTrack()
    plan = plan_pieces(parse_phonemes("hˈɛlO wˈɜɹld. [pause:1s] ðˈɛɹ."), str, vocab, track=track,
                       label=lambda written, phonemes: own_each(phonemes, track))
    assert track.words == ["hˈɛlO", "wˈɜɹld", "ðˈɛɹ"]
    assert [len(token_spans(p.phonemes, p.owners, vocab)) for p in plan if isinstance(p, Piece)] == [2, 1]
