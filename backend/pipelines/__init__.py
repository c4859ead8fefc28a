"""Pipelines: each turns a validated request into a result through one model family.

    base.py           the Pipeline interface (load / preprocess / run / postprocess)
    windows.py        WindowedClassifier: audio cut into windows, one logit vector per window
    onnx_session.py   the one place ONNX Runtime sessions are made
    torch_utils.py    what the torch backends share: local-or-hub loading, int8 and bf16
    tts/              Kokoro-82M text to speech (voices, G2P, pieces, the pipeline; torch and onnx)
    language/         Whisper spoken-language detection (torch and onnx)
    ai_voice/         AST AI-generated-voice detection (torch and onnx)

Which class serves which family on which backend is backend.catalog's business; nothing here
imports the registry, and no backend library is imported until a model is built.
"""
