"""Spoken-language detection: Whisper on torch (reference) or ONNX Runtime (lean)."""
