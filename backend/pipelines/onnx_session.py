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
- Threads: INFERENCE_THREADS, or for 0 the CPU quota's whole CPUs (backend/cpu_quota.py), never
  ONNX Runtime's default of one per host core, which a 0.1 CPU container sees by the dozen.
- Optimising the graph is most of a session's build: the optimised graph is saved once, at
  provisioning or image build (save_optimized_graph), beside the model with the fingerprint of
  the model it came from, and loaded instead when it still matches (docs/BENCHMARKS.md "Start-up
  cost"). It is saved at the portable level (no layout transforms tied to the build machine's CPU);
  those few run at load.
- The arena's default extend strategy (next power of two) peaked lower than "same as requested"
  through a registered env allocator (485 vs 569 MB for one 150-token Kokoro piece).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from backend.cpu_quota import inference_threads
from backend.errors import ModelUnavailable
from backend.memory.malloc import set_malloc_mmap_threshold
from backend.pipelines.base import Availability, fetch_command, files_identity, files_mb
from config import Settings

logger = logging.getLogger(__name__)

FINGERPRINT_BYTES = 1 << 20  # hashed at each end of a model: cheap at start, changes when the model does


def _options(settings: Settings, *, fixed_shapes: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = inference_threads(settings.inference_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = settings.onnx_cpu_arena
    options.enable_mem_pattern = settings.onnx_mem_pattern and fixed_shapes
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.onnx_intra_op_spinning else "0")
    # Errors only: the one warning these graphs give is by design (the timed Kokoro graph's frame_cap is an
    # initializer listed as an input, so that it has a default and can be fed: timed_graph.py), and it reached
    # a new user's log, in yellow, on the first speech.
    options.log_severity_level = 3
    return options


def model_fingerprint(path: Path) -> str:
    """Size and sha256 of the first and last MB of a model file."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as source:
        digest.update(source.read(FINGERPRINT_BYTES))
        source.seek(max(0, size - FINGERPRINT_BYTES))
        digest.update(source.read(FINGERPRINT_BYTES))
    return f"{size}:{digest.hexdigest()[:32]}"


def optimized_graph_path(model_path: Path) -> Path:
    """Where a model's saved optimised graph lives: beside it, named for the ONNX Runtime that made it."""
    import onnxruntime as ort

    return model_path.with_name(f"{model_path.stem}.ort-{ort.__version__}.opt.onnx")


def saved_graph(model_path: Path) -> Path | None:
    """The saved optimised graph of this very model file, or None (none saved, or made from another file)."""
    path = optimized_graph_path(model_path)
    try:
        facts = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        return path if path.is_file() and facts["source"] == model_fingerprint(model_path) else None
    except (OSError, ValueError, KeyError):
        return None


def save_optimized_graph(model_path: Path | str, settings: Settings) -> Path:
    """Optimise a model's graph once at the portable level and save it beside the model; its path."""
    import onnxruntime as ort

    model_path = Path(model_path)
    target = optimized_graph_path(model_path)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.onnx")
    options = _options(settings, fixed_shapes=False)
    # Extended, not all: 'all' adds layout transforms for the CPU it runs on, and an image is built
    # on one machine and run on another.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp)
    ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    tmp.replace(target)
    target.with_suffix(".json").write_text(json.dumps({"source": model_fingerprint(model_path),
                                                       "source_name": model_path.name}), encoding="utf-8")
    return target


def make_session(model_path: Path | str, settings: Settings, *, fixed_shapes: bool = False):
    """An InferenceSession on CPU with the quota's threads and the arena, from the saved optimised graph when there is one."""
    import onnxruntime as ort  # imported on first build only: the app itself never needs it

    set_malloc_mmap_threshold(settings.malloc_mmap_threshold_kb)
    options = _options(settings, fixed_shapes=fixed_shapes)
    saved = saved_graph(Path(model_path))
    if saved is not None:
        logger.info("onnx: %s loads its saved optimised graph %s", Path(model_path).name, saved.name)
    return ort.InferenceSession(str(saved or model_path), sess_options=options, providers=["CPUExecutionProvider"])


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
