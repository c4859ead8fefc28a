"""The README and docs/ hold no placeholder where a figure or a sentence should be (a FINAL_TABLE stood in
docs/BENCHMARKS.md for five days). A marker is a whole word: TODO, TBD, FIXME, XXX, FINAL_TABLE, PLACEHOLDER,
`<fill ...>`, or a run of question marks standing for a number."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

MARKERS = re.compile(r"\b(TODO|TBD|FIXME|XXX+|[A-Z_]*[A-Z]_TABLE|[A-Z_]*PLACEHOLDER[A-Z_]*)\b|<fill[^>]*>|\?\?\?")
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def placeholders(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line holding a placeholder marker."""
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if MARKERS.search(line)]


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_no_placeholders(path: Path) -> None:
    found = placeholders(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(ROOT)}: " + "; ".join(f"line {n}: {line[:100]}" for n, line in found)


def test_the_check_finds_each_kind_of_marker() -> None:
    text = ("a\nTODO: measure\nFINAL_TABLE\n| 1 | ??? |\nTBD\n<fill in the figure>\nWHISPER_TABLE\n"
            "LANGUAGE_AFTER_PLACEHOLDER\nfine: todo-list, TODOS, FINAL_TABLES\n")
    assert [number for number, _ in placeholders(text)] == [2, 3, 4, 5, 6, 7, 8]
