"""Character error rate of a transcript against the text that was spoken: how intelligible synthesised speech is.

Both sides are normalised the same way before comparing (Unicode NFKC, lower case, punctuation
dropped, whitespace collapsed), so "¿Sabes dónde está?" and "sabes dónde está" count as equal:
the judge (Whisper) writes punctuation and casing of its own. Accents are kept: a missing accent
is a different letter. CER = Levenshtein distance over characters / reference length.
"""
from __future__ import annotations

import unicodedata


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation and symbols dropped, whitespace collapsed to single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    kept = "".join(ch if not unicodedata.category(ch).startswith(("P", "S")) else " " for ch in text)
    return " ".join(kept.split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance of the normalised texts over the normalised reference's length (0 = word for word)."""
    reference, hypothesis = normalise(reference), normalise(hypothesis)
    if not reference:
        raise ValueError("the reference text is empty after normalisation")
    return edit_distance(reference, hypothesis) / len(reference)
