"""Issue 24's invariant through HTTP with the real models (slow: minutes of real synthesis; the benchmark's).

One real Gunicorn worker in a 512 MB memory cgroup (where this user can make one), the packaged
Kokoro int8 and the whisper-base ONNX export in ONNX_DIR: the issue's reproduction (a numeric text,
a restart with the cost file kept, then tts, tts, language, language, tts), a short text beside the
idle language model and a long one after it, then seeded random sequences with TTL expiries, unloads
and a disconnect. Every request is served (or served after a recycle), none refused with nothing in
flight, no OOM kill. Figures: docs/BENCHMARKS.md, issue 24.
"""
from __future__ import annotations

import pytest

from config import build_settings
from scripts import bench_never_stuck

pytestmark = pytest.mark.slow


def test_the_real_models_never_get_stuck_through_http(tmp_path) -> None:
    onnx_dir = build_settings().onnx_root
    for model in ("kokoro/model.int8.onnx", "whisper/model.onnx"):
        if not (onnx_dir / model).is_file():
            pytest.skip(f"{onnx_dir / model} is missing (python -m backend.provision voices; the whisper-base export)")
    assert bench_never_stuck.main(["--real", "--reproduction", "--squeeze", "--sequences", "1", "--steps", "6",
                                   "--state", str(tmp_path), "BACKEND=onnx", "ENABLED_MODELS=tts,language",
                                   "MODEL_TTL_S=10"]) == 0
