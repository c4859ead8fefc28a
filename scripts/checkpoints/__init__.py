"""Random-weight checkpoints built with the real model classes: tiny ones for tests, real-shape ones for benchmarks. One module per model family (kokoro.py, whisper.py, ast.py)."""
