"""Print the README's configuration table from config.Settings (the single source of truth).

Usage: .venv/bin/python scripts/config_table.py [--write]   (--write replaces the table in README.md;
tests/unit/test_config.py fails when the README's table is out of date).
"""
from __future__ import annotations

import sys
from pathlib import Path

from config import Settings


def _default(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "(empty)"
    if isinstance(value, list):
        return ",".join(value) or "(empty)"
    if value is None or value == "":
        return "(unset)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def rows() -> list[str]:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        lines.append(f"| `{name.upper()}` | `{_default(field.default)}` | {field.description} |")
    return lines


README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def readme_table() -> str:
    """The table currently between the README's markers."""
    text = README.read_text()
    return text[text.index(START) + len(START):text.index(END)].strip()


def write_readme() -> None:
    text = README.read_text()
    head, tail = text[:text.index(START) + len(START)], text[text.index(END):]
    README.write_text(head + "\n" + "\n".join(rows()) + "\n" + tail)


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_readme()
    else:
        print("\n".join(rows()))
