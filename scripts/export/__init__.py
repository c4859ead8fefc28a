"""Torch -> ONNX exporters, one module per model family (kokoro.py, whisper.py, ast.py), run by scripts/export_onnx.py."""
