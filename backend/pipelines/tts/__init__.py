"""Text to speech: Kokoro-82M on torch (reference) or ONNX Runtime (lean)."""
