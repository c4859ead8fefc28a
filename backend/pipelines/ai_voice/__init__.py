"""AI-generated-voice detection: AST on torch (reference) or ONNX Runtime (lean)."""
