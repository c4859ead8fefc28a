"""The catalog: which pipelines exist, which class runs each on each backend, what each costs.

A family is one registry name (tts, language, ai_voice) served by one Pipeline class per backend.
Classes are named as "module:Class" and imported only when the registry builds the model, so
importing the app never imports torch, transformers, kokoro or onnxruntime. A new family (say,
animation) is one more entry in FAMILIES and its name in config.MODEL_NAMES.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from backend.registry import ModelSpec
from config import Settings

if TYPE_CHECKING:  # typing only: the catalog imports pipeline modules by name, when a model is built
    from backend.pipelines.base import Pipeline


@dataclass(frozen=True)
class Family:
    """One kind of model the service can serve."""

    name: str  # registry name, as in ENABLED_MODELS
    description: str
    classes: dict[str, str]  # backend -> "module:Class"
    #: Peak MB a first build adds to a fresh worker, imports included, per backend: the admission
    #: figure until the registry has measured the real one (scripts/bench_tts.py, bench_analysis.py
    #: and bench_onnx.py measure them; docs/BENCHMARKS.md has the tables).
    estimate_mb: dict[str, float]


FAMILIES: tuple[Family, ...] = (
    Family("tts", "Kokoro-82M text to speech",
           {"torch": "backend.pipelines.tts.kokoro_torch:KokoroTorchPipeline",
            "onnx": "backend.pipelines.tts.kokoro_onnx:KokoroOnnxPipeline"},
           {"torch": 1190, "onnx": 360}),
    Family("language", "Whisper spoken-language detection",
           {"torch": "backend.pipelines.language.whisper_torch:WhisperTorchPipeline",
            "onnx": "backend.pipelines.language.whisper_onnx:WhisperOnnxPipeline"},
           {"torch": 450, "onnx": 120}),
    Family("ai_voice", "AST AI-generated-voice detection",
           {"torch": "backend.pipelines.ai_voice.ast_torch:ASTTorchPipeline",
            "onnx": "backend.pipelines.ai_voice.ast_onnx:ASTOnnxPipeline"},
           {"torch": 750, "onnx": 150}),
)
BY_NAME = {family.name: family for family in FAMILIES}  # same names, same order as config.MODEL_NAMES


def pipeline_class(name: str, backend: str) -> type[Pipeline]:
    """The Pipeline class of one family on one backend (its module imported now)."""
    module_name, _, class_name = BY_NAME[name].classes[backend].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def _build(name: str, backend: str, settings: Settings) -> Pipeline:
    return pipeline_class(name, backend)(settings)


def model_specs(settings: Settings) -> list[ModelSpec]:
    """One registry spec per family, on its configured backend, enabled and pinned as configured."""
    specs = []
    for family in FAMILIES:
        backend = settings.backend_for(family.name)
        factory: Callable[[], Pipeline] = partial(_build, family.name, backend, settings)
        specs.append(ModelSpec(
            name=family.name, factory=factory, estimate_mb=family.estimate_mb[backend],
            enabled=settings.model_enabled(family.name), pinned=family.name in settings.preload_models,
            description=f"{family.description} ({backend})", max_concurrency=settings.model_concurrency))
    return specs
