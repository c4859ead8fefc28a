"""The one place ONNX Runtime sessions are made, with options chosen for memory (docs/BENCHMARKS.md).

Measured on the real Kokoro-82M int8 ONNX (scripts/bench_onnx.py): the CPU arena and memory
patterns keep a synthesis's activations reserved after it ends, so both are off by default; the
graph is optimised fully at load (lower levels saved nothing and ran slower). What decided the
peak was glibc, not ONNX Runtime: with its sliding mmap threshold, freed multi-MB activations
stay in the heap and the next ones pile on top (1.3-1.7 GB peaks for one 7 s utterance), so a
fixed threshold (MALLOC_MMAP_THRESHOLD_KB) is set before the first session is made.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import threading
from pathlib import Path
from typing import Any

from backend.errors import ModelUnavailable
from backend.pipelines.base import Availability, fetch_command, files_identity, files_mb
from config import Settings

logger = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)
_mallopt_lock = threading.Lock()
_mallopt_done: int | None = None


def set_malloc_mmap_threshold(threshold_kb: int) -> bool:
    """Fix glibc's mmap threshold (also disables its sliding adjustment); False off glibc or when 0."""
    global _mallopt_done
    if threshold_kb <= 0:
        return False
    with _mallopt_lock:
        if _mallopt_done == threshold_kb:
            return True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold_kb * 1024))
        except (OSError, AttributeError):
            return False
        if ok:
            _mallopt_done = threshold_kb
        return ok


def make_session(model_path: Path | str, settings: Settings):
    """An InferenceSession on CPU with the configured threads, arena and memory-pattern options."""
    import onnxruntime as ort  # imported on first build only: the app itself never needs it

    set_malloc_mmap_threshold(settings.malloc_mmap_threshold_kb)
    options = ort.SessionOptions()
    if settings.inference_threads:
        options.intra_op_num_threads = settings.inference_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = settings.onnx_cpu_arena
    options.enable_mem_pattern = settings.onnx_mem_pattern
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


def exported_availability(settings: Settings, folder_name: str, model: str) -> Availability:
    """Whether ONNX_DIR/<folder_name> holds an export (model.onnx + meta.json), from the files alone."""
    folder = settings.onnx_root / folder_name
    path, meta_path = folder / "model.onnx", folder / "meta.json"
    if not (path.is_file() and meta_path.is_file()):
        return Availability.missing(f"no exported {folder_name} model in {folder}", fetch_command(model))
    return Availability(servable=True, source=f"export {folder}", weights_mb=files_mb([path]),
                        identity=files_identity([path]))


def exported_model_or_unavailable(settings: Settings, folder_name: str, model: str) -> tuple[Path, dict[str, Any]]:
    """(model.onnx path, meta.json) of one exported family under ONNX_DIR; ModelUnavailable when missing."""
    availability = exported_availability(settings, folder_name, model)
    if not availability.servable:
        raise ModelUnavailable(f"{availability.reason}: run {availability.fix}", model=model)
    folder = settings.onnx_root / folder_name
    return folder / "model.onnx", json.loads((folder / "meta.json").read_text(encoding="utf-8"))
