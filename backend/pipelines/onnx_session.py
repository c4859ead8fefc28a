"""The one place ONNX Runtime sessions are made and run, with options chosen for speed and memory (docs/BENCHMARKS.md).

Measured on the real Kokoro-82M int8 ONNX (scripts/bench_onnx.py, scripts/bench_tts_peers.py):
- With the CPU arena off every activation is a fresh malloc; with glibc's mmap threshold at 1 MB
  each one over 1 MB is mmap'd, zero-filled and unmapped again: 3.2 M page faults and 2.3x the
  CPU time for one 150-token piece. So the arena is on (ONNX_CPU_ARENA), and the run option
  `memory.enable_memory_arena_shrinkage` = `cpu:0` (ONNX_ARENA_SHRINK) hands its free regions
  back after every run: the arena's speed, RSS back to the post-load level between requests
  (~262 MB instead of the 475 MB peak held). Shrinking only after a request's last piece saved
  ~2 % CPU but peaked 20 MB higher (the growing pieces fragment the held arena), so every run it is.
- The arena's peak steps with the input (power-of-two region growth): a 60 s text at 100-token
  pieces peaks at 385 MB, at 120 at 468, at 150 at 486 (TTS_PIECE_TOKENS).
- Memory patterns pre-plan allocations per input shape: only for graphs whose shapes are fixed
  (`fixed_shapes=True`: Whisper's 30 s window, AST's 1024 frames); never for TTS.
- glibc: with its sliding mmap threshold, freed multi-MB buffers stay in the heap and the next
  ones pile on top (1.3-1.7 GB peaks with the arena off), so a fixed threshold
  (MALLOC_MMAP_THRESHOLD_KB) is set before the first session is made; with the arena on it still
  keeps ~15-35 MB less resident and the peak ~10 MB lower.
- The arena's default extend strategy (next power of two) peaked lower than "same as requested"
  through a registered env allocator (485 vs 569 MB for one 150-token Kokoro piece).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from backend.errors import ModelUnavailable
from backend.memory.malloc import set_malloc_mmap_threshold
from backend.pipelines.base import Availability, fetch_command, files_identity, files_mb
from config import Settings

logger = logging.getLogger(__name__)

def make_session(model_path: Path | str, settings: Settings, *, fixed_shapes: bool = False):
    """An InferenceSession on CPU with the configured threads and arena; memory patterns only for fixed shapes."""
    import onnxruntime as ort  # imported on first build only: the app itself never needs it

    set_malloc_mmap_threshold(settings.malloc_mmap_threshold_kb)
    options = ort.SessionOptions()
    if settings.inference_threads:
        options.intra_op_num_threads = settings.inference_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = settings.onnx_cpu_arena
    options.enable_mem_pattern = settings.onnx_mem_pattern and fixed_shapes
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.onnx_intra_op_spinning else "0")
    return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


def make_run_options(settings: Settings):
    """RunOptions that shrink the arena after the run (None when the arena is off or ONNX_ARENA_SHRINK=off).

    Pass them to the run that ends a request (or to every run with ONNX_ARENA_SHRINK=run); runs
    in between go without, so one request's pieces reuse the arena's memory.
    """
    import onnxruntime as ort

    if not settings.onnx_cpu_arena or settings.onnx_arena_shrink == "off":
        return None
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


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
