"""Spoken-language detection: Whisper on torch (reference) or ONNX Runtime (lean).

    detector.py       LanguageDetector: options, softmax over the language tokens, averaging, top-k
    whisper_torch.py  transformers' Whisper, its output projection trimmed to the language rows
    whisper_onnx.py   the exported encoder + first decoder step, numpy log-mel
"""
