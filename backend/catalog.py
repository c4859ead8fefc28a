"""The catalog: which pipelines exist, which class runs each on each backend, what each is expected to cost.

A family is one registry name (tts, language, ai_voice) served by one Pipeline class per backend.
Classes are named as "module:Class" and imported only when asked for (a pipeline module imports
numpy, never its runtime at module level), so importing the app never imports torch,
transformers, kokoro or onnxruntime. A new family (say, animation) is one more entry in
FAMILIES and its name in config.MODEL_NAMES.

Before a model was ever measured, its expected cost is built from three parts (registry.Estimate):
its weight bytes at the dtype it runs in (read from its files by the pipeline's availability
check), the import cost of its runtime in this process (IMPORT_COSTS_MB; nothing once imported)
and the family's allowance for what a loaded model holds above its weights plus one request's
activations (Family.allowance_mb). Once measured, the registry's shared cost file replaces the
first two parts' guess with what this model, these files and these settings really took.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from backend.provision import progress
from backend.registry import Estimate, ModelSpec
from backend.registry.readiness import CachedAvailability
from config import Settings

if TYPE_CHECKING:  # typing only: the catalog imports pipeline modules by name
    from backend.pipelines.base import Availability, Pipeline

#: RSS a worker gains by importing each runtime module, MB: the largest figure over the pipelines
#: that import it, each in its own order right after the app (`scripts/bench_costs.py imports`,
#: docs/BENCHMARKS.md "Import costs", 2026-12-01; onnxruntime 1.32.0, misaki 0.9.4, torch
#: 2.13.0+cpu, transformers 5.23.0, kokoro 0.9.4). A module's shared parts count where they are
#: first imported: transformers.modeling_utils carries torch._dynamo and sympy; misaki.en carries
#: spaCy and, through it, torch (226 MB before torch is imported, 41 MB after: counted as 226).
IMPORT_COSTS_MB: dict[str, float] = {
    "onnxruntime": 19.6,
    "misaki.espeak": 21.1,
    "misaki.en": 225.9,
    "torch": 179.4,
    "transformers.modeling_utils": 101.1,
    "transformers.models.whisper.modeling_whisper": 9.7,
    "transformers.models.audio_spectrogram_transformer.modeling_audio_spectrogram_transformer": 8.3,
    "kokoro.model": 9.3,
    "ai_edge_litert.interpreter": 12.3,  # ai-edge-litert 2.3.0, either order with torch (2026-12-01)
}
UNKNOWN_IMPORT_MB = 50.0  # a runtime module the table does not list: a guess, on the safe side
#: settings that change what any model costs on either backend
RUNTIME_COST_SETTINGS = ("inference_threads", "onnx_cpu_arena", "onnx_mem_pattern", "malloc_mmap_threshold_kb",
                         "model_dtype", "use_int8_quantization")


@dataclass(frozen=True)
class Family:
    """One kind of model the service can serve."""

    name: str  # registry name, as in ENABLED_MODELS
    description: str
    classes: dict[str, str]  # backend -> "module:Class"
    #: MB a loaded model holds above its weight bytes (runtime buffers, unpacked weights) plus the
    #: activations of one request, per backend: measured with scripts/bench_costs.py (docs/BENCHMARKS.md
    #: "Model costs: estimate vs measured"). Only the first admission of a model uses it.
    allowance_mb: dict[str, float]
    #: settings that change what the model costs: a measurement is shared only under the same values
    cost_settings: tuple[str, ...] = RUNTIME_COST_SETTINGS


FAMILIES: tuple[Family, ...] = (
    Family("tts", "Kokoro-82M text to speech",
           {"torch": "backend.pipelines.tts.kokoro_torch:KokoroTorchPipeline",
            "onnx": "backend.pipelines.tts.kokoro_onnx:KokoroOnnxPipeline"},
           {"torch": 510, "onnx": 185},
           cost_settings=RUNTIME_COST_SETTINGS + ("tts_piece_tokens", "kokoro_g2p")),
    Family("language", "Whisper spoken-language detection",
           {"torch": "backend.pipelines.language.whisper_torch:WhisperTorchPipeline",
            "onnx": "backend.pipelines.language.whisper_onnx:WhisperOnnxPipeline"},
           {"torch": 60, "onnx": 90}),
    Family("ai_voice", "AST AI-generated-voice detection",
           {"torch": "backend.pipelines.ai_voice.ast_torch:ASTTorchPipeline",
            "onnx": "backend.pipelines.ai_voice.ast_onnx:ASTOnnxPipeline"},
           {"torch": 130, "onnx": 110}),
    # Torch only. Estimate = the generator + mapping weights (~445 MB fp32) + torch and LiteRT
    # imports (~192 MB) + this allowance ~= ANIMATION_JOB_MB[256]: the activations, the folded
    # renderer and what the freed stages leave behind.
    Family("animation", "SadTalker talking-head animation",
           {"torch": "backend.pipelines.animation.pipeline:AnimationPipeline"},
           {"torch": 470}),
)
#: Peak RSS of one animation job's process by output size, MB, at ANIMATION_BATCH_SIZE=1: measured
#: 1009 (256 px) and 1446 (512 px) for the whole job (docs/BENCHMARKS.md "Animation"), plus room
#: for real uploads and longer audio (its features are ~5 MB per minute); each extra frame in a
#: batch adds ~140 MB at 256 px.
ANIMATION_JOB_MB: dict[int, float] = {256: 1100, 512: 1600}
BY_NAME = {family.name: family for family in FAMILIES}  # same names, same order as config.MODEL_NAMES


def pipeline_class(name: str, backend: str) -> type[Pipeline]:
    """The Pipeline class of one family on one backend (its module imported now)."""
    module_name, _, class_name = BY_NAME[name].classes[backend].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def installed_voices(settings: Settings) -> list[str]:
    """The TTS voice names on disk for the configured backend; loads no model."""
    return sorted(pipeline_class("tts", settings.backend_for("tts")).voice_names(settings))


def import_cost_mb(modules: tuple[str, ...], *, fresh: bool = False) -> float:
    """What importing these modules adds to this process (only those not yet imported), or to a fresh worker."""
    return sum(IMPORT_COSTS_MB.get(module, UNKNOWN_IMPORT_MB) for module in modules
               if fresh or module not in sys.modules)


def estimate(family: Family, backend: str, settings: Settings,
             available: Callable[[], Availability] | None = None) -> Estimate:
    """What building this family's model is expected to add now, before it was measured.

    `available`: the spec's availability check (remembered, backend.registry.readiness); None = check now.
    """
    cls = pipeline_class(family.name, backend)
    modules = cls.runtime_modules(settings)
    found = available() if available is not None else cls.availability(settings)
    return Estimate(weights_mb=found.weights_mb, allowance_mb=family.allowance_mb[backend],
                    imports_mb=import_cost_mb(modules), fresh_imports_mb=import_cost_mb(modules, fresh=True))


def cost_key(family: Family, backend: str, settings: Settings,
             available: Callable[[], Availability] | None = None) -> str:
    """What measurements of this model are shared under: family, backend, model files, cost settings.

    `available`: the spec's availability check (remembered, backend.registry.readiness); None = check now.
    """
    availability = available() if available is not None else _availability(family.name, backend, settings)
    knobs = ",".join(f"{name}={getattr(settings, name)}" for name in family.cost_settings)
    return f"{family.name}/{backend}/{availability.identity or availability.source}/{knobs}"


def _build(name: str, backend: str, settings: Settings) -> Pipeline:
    return pipeline_class(name, backend)(settings)


def _availability(name: str, backend: str, settings: Settings) -> Availability:
    return pipeline_class(name, backend).availability(settings)


def _import_runtime(name: str, backend: str, settings: Settings) -> None:
    pipeline_class(name, backend).import_runtime(settings)


def model_specs(settings: Settings) -> list[ModelSpec]:
    """One registry spec per family, on its configured backend, enabled and pinned as configured.

    Nothing is imported here: each callable finds its pipeline class when the registry calls it.
    """
    specs = []
    for family in FAMILIES:
        backend = settings.backend_for(family.name)
        factory: Callable[[], Pipeline] = partial(_build, family.name, backend, settings)
        available = CachedAvailability(partial(_availability, family.name, backend, settings),
                                       stamp=partial(progress.stamp, settings))
        specs.append(ModelSpec(
            name=family.name, factory=factory, estimate=partial(estimate, family, backend, settings, available),
            enabled=settings.model_enabled(family.name), pinned=family.name in settings.preload_models,
            description=f"{family.description} ({backend})", max_concurrency=settings.model_concurrency,
            admitted=settings.tts_admitted if family.name == "tts" else 0,  # TTS takes turns by piece
            availability=available,
            import_runtime=partial(_import_runtime, family.name, backend, settings),
            cost_key=partial(cost_key, family, backend, settings, available),
            runs_elsewhere=_runs_elsewhere(family.name, settings),
            size_unit=REQUEST_SIZE_UNITS.get(family.name, ""),
            size_cap=settings.tts_piece_tokens if family.name == "tts" else None))
    return specs


#: what a request's size counts, for the registry's cost by size (backend.registry.request_cost)
REQUEST_SIZE_UNITS = {"tts": "tokens", "language": "s", "ai_voice": "s"}


def _runs_elsewhere(name: str, settings: Settings) -> str:
    """Animation with JOBS_BACKEND=rq runs on a jobs worker (backend.jobs.rq): this service only enqueues."""
    return "an RQ jobs worker (JOBS_BACKEND=rq)" if name == "animation" and settings.jobs_backend == "rq" else ""
