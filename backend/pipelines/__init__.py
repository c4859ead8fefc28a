"""Which pipelines exist, which backend builds each, and what each is expected to cost.

Factories import their backend module only when the registry builds the model, so importing
the app never imports torch, transformers, kokoro or onnxruntime.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial

from backend.pipelines.base import Pipeline
from backend.registry import ModelSpec
from config import MODEL_NAMES, Settings

# "module:Class" of each (model, backend).
PIPELINE_CLASSES: dict[tuple[str, str], str] = {
    ("tts", "torch"): "backend.pipelines.tts.kokoro_torch:KokoroTorchPipeline",
    ("tts", "onnx"): "backend.pipelines.tts.kokoro_onnx:KokoroOnnxPipeline",
    ("language", "torch"): "backend.pipelines.language.whisper_torch:WhisperTorchPipeline",
    ("language", "onnx"): "backend.pipelines.language.whisper_onnx:WhisperOnnxPipeline",
    ("ai_voice", "torch"): "backend.pipelines.ai_voice.ast_torch:ASTTorchPipeline",
    ("ai_voice", "onnx"): "backend.pipelines.ai_voice.ast_onnx:ASTOnnxPipeline",
}

# Peak MB a first build adds to a fresh worker, imports included (../shared/MEASUREMENTS.md);
# used until the registry has measured the real figure.
ESTIMATE_MB: dict[tuple[str, str], float] = {
    ("tts", "torch"): 1190, ("tts", "onnx"): 360,
    ("language", "torch"): 450, ("language", "onnx"): 120,
    ("ai_voice", "torch"): 750, ("ai_voice", "onnx"): 150,
}

DESCRIPTIONS = {
    "tts": "Kokoro-82M text to speech",
    "language": "Whisper spoken-language detection",
    "ai_voice": "AST AI-generated-voice detection",
}


def pipeline_class(name: str, backend: str) -> type[Pipeline]:
    module_name, _, class_name = PIPELINE_CLASSES[(name, backend)].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def _build(name: str, backend: str, settings: Settings) -> Pipeline:
    return pipeline_class(name, backend)(settings)


def model_specs(settings: Settings) -> list[ModelSpec]:
    """One spec per pipeline, enabled and pinned as configured."""
    specs = []
    for name in MODEL_NAMES:
        backend = settings.backend_for(name)
        factory: Callable[[], Pipeline] = partial(_build, name, backend, settings)
        specs.append(ModelSpec(
            name=name, factory=factory, estimate_mb=ESTIMATE_MB[(name, backend)],
            enabled=settings.model_enabled(name), pinned=name in settings.preload_models,
            description=f"{DESCRIPTIONS[name]} ({backend})", max_concurrency=settings.model_concurrency))
    return specs
