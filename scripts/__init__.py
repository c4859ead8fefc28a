"""Benchmarks, budget check, ONNX export and checkpoint builders (importable by the tests)."""
