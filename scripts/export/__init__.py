"""Torch -> ONNX exporters, one module per model family (kokoro.py, whisper.py, ast.py), run by
scripts/export_onnx.py and scripts/fetch_models.py."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

#: where each model's export goes under ONNX_DIR, as its ONNX pipeline loads it; the exporter module has the same name
FOLDERS = {"tts": "kokoro", "language": "whisper", "ai_voice": "ast"}


def exporter(model: str) -> Callable[..., Any]:
    """`export(source, out_dir, *, int8=True) -> list[Parity]` of one model (its module imported now)."""
    return importlib.import_module(f"scripts.export.{FOLDERS[model]}").export
