"""Character error rate: normalisation and the edit distance behind it."""
from __future__ import annotations

import pytest

from scripts.intelligibility import character_error_rate, edit_distance, normalise


def test_normalise_drops_case_punctuation_and_extra_spaces_but_keeps_accents():
    assert normalise("¿Sabes  dónde está la Biblioteca? ") == "sabes dónde está la biblioteca"
    assert normalise("It's 7:30 — ok!") == "it s 7 30 ok"


@pytest.mark.parametrize("a, b, distance", [("", "", 0), ("abc", "abc", 0), ("abc", "", 3), ("kitten", "sitting", 3),
                                            ("está", "esta", 1)])
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance == edit_distance(b, a)


def test_character_error_rate_is_distance_over_the_reference_length():
    assert character_error_rate("El tren sale.", "el tren sale") == 0.0
    assert character_error_rate("abcd", "abxd") == 0.25
    assert character_error_rate("ab", "abcdef") == 2.0  # insertions can exceed 1
    with pytest.raises(ValueError, match="empty"):
        character_error_rate("?!", "x")
