"""Text cut into pieces Kokoro can synthesise at once, each tagged with the boundary that follows it.

Kokoro's context is 512 positions (510 phonemes plus two pad tokens); a synthesis's activation
memory grows with the piece, so the server caps pieces lower (TTS_PIECE_TOKENS). The first piece
is short when a phrase allows it so the first audio leaves early: a clause ending within
TTS_FIRST_PIECE_TOKENS and half as much again, else the sentence's first clause mark after that, else the
whole first sentence (a text of at most twice TTS_FIRST_PIECE_TOKENS is one piece: it is quick to say whole);
each later piece may be twice as long as the one before, up to TTS_PIECE_TOKENS, which keeps
synthesis ahead of playback. Sentences are packed together while they fit, never across a
paragraph or an explicit pause. A piece ends at a sentence or clause mark, growing past its limit to
the next one: a sentence is cut between words only when it is longer than TTS_PIECE_TOKENS (at its last
clause mark that leaves at least half a piece, else between words; a giant word anywhere). Kokoro says each piece as a whole utterance, so a
cut between words is heard: whisper-base's CER over 72 sentences in six languages was 0.041 with the
first sentence cut between words, 0.037 with only the first piece cut, 0.018 with cuts at marks only,
for 0.83x the CPU (docs/BENCHMARKS.md, issue 23, "Cuts between words").

While a request with less left to say than the piece waits for the model (backend.pipelines.turns),
a piece longer than TTS_CONTENDED_PIECE_TOKENS is cut again at its turn (`contended_cut`): into parts
of about equal size, each at a sentence mark, else a clause mark, else between words, so the short
request waits for a short piece. Alone or among long requests, a request keeps its full pieces (each
model call also synthesises padding that the joins trim: fewer calls cost less).

The boundary after a piece ("word", "clause", "sentence", "paragraph", "pause", "end") decides the
silence joins.py puts there. Inline controls (markup.py) flow through here: a Pause is kept as
its own item, an override's phonemes are spliced into its sentence without G2P.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from backend.pipelines.tts.markup import Pause, Phonemes, Segment
from backend.pipelines.tts.words import WordTrack, own_all

MAX_TOKENS = 510  # Kokoro's context is 512 positions: 510 phonemes plus the two pad tokens
BOUNDARIES = ("word", "clause", "sentence", "paragraph", "pause", "end")
CLAUSE_MARKS = ",;:—–"
SENTENCE_MARKS = ".!?…"
_TEXT_BREAK = re.compile(r"(\n[ \t]*\n\s*|\n+\s*|(?<=[.!?…。！？])\s+)")
_SPACE_BEFORE_MARK = re.compile(r"\s+(?=[,.;:!?…])")


@dataclass(frozen=True)
class Piece:
    """Phonemes synthesised in one model call and the boundary that follows them."""

    phonemes: str
    boundary: str
    owners: tuple[int, ...] = ()  # with a WordTrack: the word of each non-space phoneme (-1: punctuation)


PlanItem = Piece | Pause


def count_tokens(phonemes: str, vocab: dict[str, int]) -> int:
    return sum(1 for ch in phonemes if ch in vocab)


def piece_limit(index: int, limit: int, first_limit: int) -> int:
    """Token limit of the index-th spoken piece: first_limit, doubling, capped at limit (0 = no short start)."""
    if first_limit <= 0 or first_limit >= limit:
        return limit
    return min(limit, first_limit << min(index, 16))


Label = Callable[[str, str], list[int]]  # (written text, its phonemes) -> owners of the non-space phonemes


def _sentences(segments: list[Segment], phonemize: Callable[[str], str], track: WordTrack | None = None,
               label: Label | None = None) -> list[tuple[str, str] | Pause]:
    """(sentence phonemes, boundary after it) and Pauses, in order; an explicit pause or the end of the
    text decides the boundary of the sentence before it, whatever whitespace came between. With a track,
    each sentence's owners are appended to track.units, in the same order."""
    units = list(_raw_sentences(segments, phonemize, track, label))
    for i, unit in enumerate(units):
        following = units[i + 1] if i + 1 < len(units) else None
        if isinstance(unit, tuple) and not isinstance(following, tuple):
            units[i] = (unit[0], "pause" if isinstance(following, Pause) else "end")
    return units


def _raw_sentences(segments: list[Segment], phonemize: Callable[[str], str], track: WordTrack | None,
                   label: Label | None) -> Iterator[tuple[str, str] | Pause]:
    parts: list[str] = []
    owners: list[int] = []  # joining and the space rule below change only spaces: non-space phonemes keep their owner

    def flush(boundary: str) -> Iterator[tuple[str, str]]:
        phonemes = _SPACE_BEFORE_MARK.sub("", " ".join(p for p in parts if p)).strip()
        parts.clear()
        if phonemes:
            if track is not None:
                track.units.append(owners.copy())
            yield phonemes, boundary
        owners.clear()

    for segment in segments:
        if isinstance(segment, Pause):
            yield from flush("pause")
            yield segment
        elif isinstance(segment, Phonemes):
            parts.append(segment.phonemes)
            if track is not None:
                owners.extend(own_all(segment.phonemes, segment.shown, track))
        else:
            chunks = _TEXT_BREAK.split(segment.text)
            for i, chunk in enumerate(chunks):
                if i % 2 == 0:
                    if chunk.strip():
                        parts.append(phonemize(chunk.strip()))
                        if track is not None and label is not None:
                            owners.extend(label(chunk.strip(), parts[-1]))
                else:
                    yield from flush("paragraph" if chunk.count("\n") >= 2 else "sentence")
    yield from flush("end")


def _atoms(phonemes: str, boundary: str) -> list[tuple[str, str]]:
    """Words of a sentence, each with the boundary after it (a clause mark, a word gap, the sentence's)."""
    words = phonemes.split()
    atoms = [(w, "clause" if w[-1] in CLAUSE_MARKS else "word") for w in words]
    if atoms:
        atoms[-1] = (atoms[-1][0], boundary)
    return atoms


def _split_word(word: str, vocab: dict[str, int], limit: int) -> list[str]:
    """A single word longer than the limit, cut anywhere."""
    out, head, kept = [], "", 0
    for ch in word:
        if ch in vocab and kept == limit:
            out.append(head)
            head, kept = "", 0
        head += ch
        kept += ch in vocab
    return out + [head] if head else out


def _first_phrase(atoms: list[tuple[str, str]], cap: int, limit: int, tokens: Callable[[str], int]) -> int:
    """How many atoms the first piece takes when a clause ends between half the cap and half as much again
    (a phrase, not a cut between words: "The kettle is on," rather than "The kettle is"); 0 when none does."""
    for i, (_, after) in enumerate(atoms[:-1]):
        said = tokens(" ".join(w for w, _ in atoms[:i + 1]))
        if said > min(cap * 3 // 2, limit):
            return 0
        if after == "clause" and said >= cap // 2:
            return i + 1
    return 0


def plan_pieces(segments: list[Segment], phonemize: Callable[[str], str], vocab: dict[str, int],
                limit: int = MAX_TOKENS, first_limit: int = 0, track: WordTrack | None = None,
                label: Label | None = None) -> list[PlanItem]:
    """Pieces of at most piece_limit(i) tokens and the Pauses between them, in speaking order; with a track
    (words.py), each piece carries the owners of its phonemes (`label` gives those of a written text's)."""

    def tokens(text: str) -> int:
        return count_tokens(text, vocab)

    units = _sentences(segments, phonemize, track, label)
    if track is not None:
        return _owned(_plan(units, vocab, limit, first_limit), units, track, tokens)
    return _plan(units, vocab, limit, first_limit)


def _owned(plan: list[PlanItem], units: list[tuple[str, str] | Pause], track: WordTrack,
           tokens: Callable[[str], int]) -> list[PlanItem]:
    """The plan with each piece's owners: pieces hold the non-space phonemes of the sentences they were
    cut from, in order (a sentence without tokens is dropped by _plan, so its owners are too)."""
    queue: list[int] = []
    sentences = [unit for unit in units if isinstance(unit, tuple)]
    for (phonemes, _), owners in zip(sentences, track.units, strict=True):
        if tokens(phonemes):
            queue += owners
    at, out = 0, []
    for item in plan:
        if isinstance(item, Piece) and queue:
            count = sum(1 for ch in item.phonemes if not ch.isspace())
            item = Piece(item.phonemes, item.boundary, tuple(queue[at:at + count]))
            at += count
        out.append(item)
    return out


def _plan(units: list[tuple[str, str] | Pause], vocab: dict[str, int], limit: int, first_limit: int) -> list[PlanItem]:
    plan: list[PlanItem] = []
    spoken = 0  # pieces emitted so far: the next one's limit is piece_limit(spoken)

    def tokens(text: str) -> int:
        return count_tokens(text, vocab)

    if sum(tokens(u[0]) for u in units if isinstance(u, tuple)) <= 2 * first_limit:
        first_limit = 0  # a text this short is quick to say whole: no cut for the sake of the first audio

    def emit(atoms: list[tuple[str, str]]) -> None:
        nonlocal spoken
        plan.append(Piece(" ".join(w for w, _ in atoms), atoms[-1][1]))
        spoken += 1

    for unit in units:
        if isinstance(unit, Pause):
            plan.append(unit)
            continue
        phonemes, boundary = unit
        if not tokens(phonemes):
            continue
        last = plan[-1] if plan else None
        if isinstance(last, Piece) and last.boundary == "sentence" and \
                tokens(last.phonemes) + 1 + tokens(phonemes) <= piece_limit(spoken - 1, limit, first_limit):
            plan[-1] = Piece(f"{last.phonemes} {phonemes}", boundary)
            continue
        if tokens(phonemes) <= piece_limit(spoken, limit, first_limit):
            plan.append(Piece(phonemes, boundary))
            spoken += 1
            continue
        current: list[tuple[str, str]] = []
        atoms = _atoms(phonemes, boundary)
        if spoken == 0 and first_limit:
            phrase = _first_phrase(atoms, piece_limit(0, limit, first_limit), limit, tokens)
            if phrase:
                emit(atoms[:phrase])
                atoms = atoms[phrase:]
        for word, after in atoms:
            cap = piece_limit(spoken, limit, first_limit)
            if tokens(word) > limit:  # one giant "word": flush, then cut it anywhere
                if current:
                    emit(current)
                    current = []
                chunks = _split_word(word, vocab, limit)
                for chunk in chunks[:-1]:
                    emit([(chunk, "word")])
                current = [(chunks[-1], after)]
                continue
            while current:
                said = tokens(" ".join(w for w, _ in current + [(word, after)]))
                if said <= cap:
                    break
                clause_cuts = [i for i, (_, b) in enumerate(current[:-1]) if b == "clause"
                               and tokens(" ".join(w for w, _ in current[:i + 1])) >= cap // 2]
                if clause_cuts:
                    cut = clause_cuts[-1] + 1
                elif said > limit:
                    cut = len(current)
                else:  # a cut between words is heard (module docstring): grow to a clause mark or the sentence's end
                    break
                emit(current[:cut])
                current = current[cut:]
                cap = piece_limit(spoken, limit, first_limit)
            current.append((word, after))
        if current:
            emit(current)
    return plan


def contended_cut(ids: list[int], cap: int, space: int | None, marks: dict[int, str]) -> tuple[int, str] | None:
    """Where to cut a piece of token `ids` longer than `cap` while others wait for the model: the index of a
    space token and the boundary the head ends at; None when it fits, or has no space to cut at.

    The piece is cut into about equal parts of at most `cap` (100 tokens with a cap of 40: 34, then the
    rest cut again at its turn), the head ending at its last sentence mark ("sentence"), else clause mark
    ("clause"), in the second half of its part, else at its last word ("word"). `marks` maps a mark's
    token id to "sentence" or "clause".
    """
    if cap <= 0 or len(ids) <= cap or space is None:
        return None
    part = -(-len(ids) // -(-len(ids) // cap))  # ceil(len / parts), parts = ceil(len / cap)
    spaces = [i for i in range(1, min(part, len(ids) - 1) + 1) if ids[i] == space]
    for kind in ("sentence", "clause"):
        found = [i for i in spaces if i >= part // 2 and marks.get(ids[i - 1]) == kind]
        if found:
            return found[-1], kind
    return (spaces[-1], "word") if spaces else None


def cut_marks(vocab: dict[str, int]) -> tuple[int | None, dict[int, str]]:
    """The space's token id and the mark ids contended_cut cuts after, from a model's vocab."""
    marks = {vocab[ch]: "sentence" for ch in SENTENCE_MARKS if ch in vocab}
    marks.update({vocab[ch]: "clause" for ch in CLAUSE_MARKS if ch in vocab})
    return vocab.get(" "), marks
