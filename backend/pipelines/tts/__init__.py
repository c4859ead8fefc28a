"""Text to speech: Kokoro-82M on torch (reference) or ONNX Runtime (lean).

    voices.py        voice names and mixes, style packs, the bank that reads them on demand
    g2p.py           the languages this build speaks and the offline phonemiser
    pieces.py        text cut into pieces of at most TTS_PIECE_TOKENS phonemes
    pipeline.py      KokoroPipeline: request -> pieces -> samples -> encoded audio (both backends)
    kokoro_torch.py  weights loaded for memory with the `kokoro` package's KModel
    kokoro_onnx.py   the exported or the published int8 ONNX, on ONNX Runtime
"""
