"""The one place ONNX Runtime sessions are made, with options chosen for memory (docs/BENCHMARKS.md)."""
from __future__ import annotations

from pathlib import Path

from config import Settings


def make_session(model_path: Path | str, settings: Settings):
    """An InferenceSession on CPU with the configured threads, arena and memory-pattern options."""
    import onnxruntime as ort  # imported on first build only: the app itself never needs it

    options = ort.SessionOptions()
    if settings.inference_threads:
        options.intra_op_num_threads = settings.inference_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = settings.onnx_cpu_arena
    options.enable_mem_pattern = settings.onnx_mem_pattern
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
