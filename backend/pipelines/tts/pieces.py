"""Text cut into pieces Kokoro can synthesise at once: at sentence, then clause, then word boundaries.

Kokoro's context is 512 positions (510 phonemes plus two pad tokens); a synthesis's activation
memory grows with the piece, so the server may cap pieces lower (TTS_PIECE_TOKENS).
"""
from __future__ import annotations

import re
from collections.abc import Callable

MAX_TOKENS = 510  # Kokoro's context is 512 positions: 510 phonemes plus the two pad tokens
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+|\n+")
_CLAUSE_END = re.compile(r"(?<=[,;:—–、])\s+")


def count_tokens(phonemes: str, vocab: dict[str, int]) -> int:
    return sum(1 for ch in phonemes if ch in vocab)


def _cut_phonemes(phonemes: str, vocab: dict[str, int], limit: int) -> list[str]:
    """Split an over-long phoneme string at word gaps (or anywhere, for one giant word)."""
    pieces, current = [], ""
    for word in phonemes.split(" "):
        candidate = f"{current} {word}".strip()
        if current and count_tokens(candidate, vocab) > limit:
            pieces.append(current)
            candidate = word
        while count_tokens(candidate, vocab) > limit:
            head, kept = "", 0
            for ch in candidate:
                kept += ch in vocab
                if kept > limit:
                    break
                head += ch
            pieces.append(head)
            candidate = candidate[len(head):]
        current = candidate
    if current:
        pieces.append(current)
    return pieces


def plan_pieces(text: str, phonemize: Callable[[str], str], vocab: dict[str, int],
                limit: int = MAX_TOKENS) -> list[str]:
    """Phoneme pieces of at most `limit` tokens, cut at sentence, then clause, then word boundaries.

    The first sentence is its own piece so streaming starts after one sentence; later sentences
    are packed together up to the limit (fewer, longer model calls).
    """
    units: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sentence:
            continue
        phonemes = phonemize(sentence)
        if count_tokens(phonemes, vocab) <= limit:
            units.append(phonemes)
            continue
        for clause in (c.strip() for c in _CLAUSE_END.split(sentence)):
            clause_phonemes = phonemize(clause) if clause else ""
            units.extend(_cut_phonemes(clause_phonemes, vocab, limit))
    units = [u for u in units if count_tokens(u, vocab)]
    pieces: list[str] = []
    for unit in units:
        if len(pieces) >= 2:
            merged = f"{pieces[-1]} {unit}"
            if count_tokens(merged, vocab) <= limit:
                pieces[-1] = merged
                continue
        pieces.append(unit)
    return pieces
