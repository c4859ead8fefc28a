"""Which written word each phoneme belongs to, and when each word is spoken (captions).

The G2P turns a sentence into phoneme words separated by spaces; usually one per written word,
but espeak-ng joins some unstressed words ("in the" -> "ɪnðə") and may split others. `align`
matches them by a small dynamic programme on lengths (each written word weighed by its own
phonemes, asked of the G2P only when the counts differ) and gives every non-space phoneme
character an owner: the index of its word, or -1 for punctuation. Phonemes joined from several
words are shared among them in proportion to their weights. The owners travel with the phonemes
through pieces.plan_pieces (the non-space characters of the pieces are those of the sentences, in
order) and become token spans; the model's duration per token then gives each word its start and
end in the returned audio (`word_times`), after the pipeline has trimmed and joined the pieces.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

FRAME_SAMPLES = 600  # one duration frame of Kokoro's decoder: 25 ms at 24 kHz
# A word is heard this long before the first frame of its first phoneme: faster-whisper's word starts on the
# real whisper-base preceded ours by a median 0.125 s (5 frames), the same in en/es/fr and within 0.04 s for every
# class of first sound, on one set of paragraphs (scripts/bench_tts_captions.py --texts fit), and the shift was
# then checked on another (docs/BENCHMARKS.md, issue 23). Every time of a piece moves by it, ends too.
HEARD_EARLY_SAMPLES = 5 * FRAME_SAMPLES
_MAX_GROUP = 3       # at most this many words share one phoneme word (or one word spans this many)


@dataclass(frozen=True)
class WordSpan:
    """A word's tokens inside one piece: [first, stop) into the piece's token ids."""

    word: int   # index into WordTrack.words
    first: int
    stop: int


@dataclass
class WordTrack:
    """Words of a request in order, and the owner of each non-space phoneme character, sentence by sentence."""

    words: list[str] = field(default_factory=list)
    units: list[list[int]] = field(default_factory=list)  # owners per sentence unit, as plan_pieces yields them

    def add(self, text: str) -> int:
        self.words.append(text)
        return len(self.words) - 1


def is_mark(ch: str) -> bool:
    """Punctuation in a phoneme string: timed as a pause, owned by no word."""
    return unicodedata.category(ch)[0] in "PSZ"


def written_words(text: str) -> list[str]:
    """The words of a text as a reader sees them, without the punctuation around them."""
    words = []
    for token in text.split():
        first, stop = 0, len(token)
        while first < stop and is_mark(token[first]):
            first += 1
        while stop > first and is_mark(token[stop - 1]):
            stop -= 1
        if any(ch.isalnum() for ch in token[first:stop]):
            words.append(token[first:stop])
    return words


def _weight(phonemes: str) -> int:
    return max(1, sum(1 for ch in phonemes if not ch.isspace() and not is_mark(ch)))


def _groups(text_weights: Sequence[float], phoneme_weights: Sequence[float]) -> list[tuple[int, int, int, int]]:
    """Monotone groups (words i..i2, phoneme words j..j2), one side of each a single item, of least length misfit."""
    n, m = len(text_weights), len(phoneme_weights)
    inf = float("inf")
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    back: list[list[tuple[int, int] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    scale = sum(phoneme_weights) / max(1e-9, sum(text_weights))
    for i in range(n + 1):
        for j in range(m + 1):
            if cost[i][j] == inf:
                continue
            for di, dj in [(1, 1)] + [(k, 1) for k in range(2, _MAX_GROUP + 1)] + \
                    [(1, k) for k in range(2, _MAX_GROUP + 1)]:
                if i + di > n or j + dj > m:
                    continue
                misfit = abs(sum(text_weights[i:i + di]) * scale - sum(phoneme_weights[j:j + dj]))
                step = cost[i][j] + misfit + (0.0 if (di, dj) == (1, 1) else 1.0)
                if step < cost[i + di][j + dj]:
                    cost[i + di][j + dj], back[i + di][j + dj] = step, (i, j)
    if cost[n][m] == inf:
        return []
    groups, i, j = [], n, m
    while (i, j) != (0, 0):
        pi, pj = back[i][j]  # type: ignore[misc]
        groups.append((pi, i, pj, j))
        i, j = pi, pj
    return groups[::-1]


def align(text: str, phonemes: str, track: WordTrack, weigh: Callable[[str], str] | None = None) -> list[int]:
    """Owners of the non-space characters of `phonemes` (G2P of `text`); new words are added to `track`.

    `weigh(word)` phonemises one word alone, to weigh words when the G2P joined or split some."""
    chars = [ch for ch in phonemes if not ch.isspace()]
    owners = [-1] * len(chars)
    words = written_words(text)
    spans, at = [], 0  # phoneme words holding more than punctuation: (first char, stop char)
    for chunk in phonemes.split():
        if any(not is_mark(ch) for ch in chunk):
            spans.append((at, at + len(chunk)))
        at += len(chunk)
    if not words or not spans:
        return owners
    ids = [track.add(word) for word in words]
    if len(words) == len(spans):
        groups = [(k, k + 1, k, k + 1) for k in range(len(words))]
        text_weights = [1.0] * len(words)
    else:
        text_weights = [float(_weight(weigh(word) if weigh else word)) for word in words]
        phoneme_weights = [float(_weight("".join(chars[a:b]))) for a, b in spans]
        groups = _groups(text_weights, phoneme_weights) or [(0, len(words), 0, len(spans))]
    for i, i2, j, j2 in groups:
        first, stop = spans[j][0], spans[j2 - 1][1]
        sounding = [k for k in range(first, stop) if not is_mark(chars[k])]
        total = sum(text_weights[i:i2])
        done = 0.0
        for w in range(i, i2):  # phonemes of several words are shared by weight, in order
            lo = round(len(sounding) * done / total)
            done += text_weights[w]
            hi = round(len(sounding) * done / total)
            for k in sounding[lo:hi]:
                owners[k] = ids[w]
    return owners


def own_all(phonemes: str, word: str, track: WordTrack) -> list[int]:
    """Owners when all of `phonemes` is one word (a pronunciation override)."""
    index = track.add(word)
    return [-1 if is_mark(ch) else index for ch in phonemes if not ch.isspace()]


def own_each(phonemes: str, track: WordTrack) -> list[int]:
    """Owners for phoneme input: each phoneme word is its own word."""
    owners = []
    for chunk in phonemes.split():
        sounding = [ch for ch in chunk if not is_mark(ch)]
        index = track.add("".join(ch for ch in chunk if not is_mark(ch))) if sounding else -1
        owners += [-1 if is_mark(ch) else index for ch in chunk]
    return owners


def token_spans(phonemes: str, owners: Sequence[int], vocab: dict[str, int]) -> tuple[WordSpan, ...]:
    """Each owned word's [first, stop) token range in a piece (tokens: the characters in vocab)."""
    spans: dict[int, list[int]] = {}
    if not owners:
        return ()
    token, k = 0, 0
    for ch in phonemes:
        owner = -1
        if not ch.isspace():
            owner = owners[k]
            k += 1
        if ch in vocab:
            if owner >= 0:
                span = spans.setdefault(owner, [token, token + 1])
                span[1] = token + 1
            token += 1
    return tuple(WordSpan(word, first, stop) for word, (first, stop) in spans.items() if stop > first)


@dataclass(frozen=True)
class WordTime:
    """A word and when it is said in the returned audio, in samples."""

    word: int
    start: int
    end: int


def word_times(spans: Sequence[WordSpan], durations: Sequence[float], offset: int, cut: int,
               length: int, early: int = HEARD_EARLY_SAMPLES) -> list[WordTime]:
    """Sample times of a piece's words: `durations` per token (frames, the pads at both ends included), the
    piece's audio cut by `cut` samples at its start, `length` samples kept, placed at `offset` in the output;
    every time `early` samples before the frames say (HEARD_EARLY_SAMPLES), inside the kept audio."""
    edges = [-early]
    for frames in durations:
        edges.append(edges[-1] + int(round(float(frames))) * FRAME_SAMPLES)

    def place(sample: int) -> int:
        return offset + min(max(sample - cut, 0), length)

    times = []
    for s in spans:
        start = place(edges[s.first + 1])
        end = place(edges[s.stop + 1])
        if end <= start:  # moved wholly before the kept audio ("The" at speed 1.2): starts with it, keeps its length
            end = min(start + max(edges[s.stop + 1] - edges[s.first + 1], 1), offset + length)
        times.append(WordTime(s.word, start, max(end, min(start + 1, offset + length))))
    return times
