"""The catalog names every configurable family, on every backend, with a class that exists, and
estimates a model's cost from its files, its runtime's import cost here and the family's allowance."""
from __future__ import annotations

import sys

from backend import catalog
from backend.pipelines.base import Pipeline
from config import MODEL_NAMES


def test_the_catalog_and_the_settings_name_the_same_families():
    assert tuple(catalog.BY_NAME) == MODEL_NAMES


def test_every_family_has_a_class_and_an_allowance_per_backend(make_settings):
    settings = make_settings()
    for family in catalog.FAMILIES:
        # animation runs on torch only (no ONNX export of SadTalker)
        backends = {"torch"} if family.name == "animation" else {"torch", "onnx"}
        assert set(family.classes) == set(family.allowance_mb) == backends
        for backend in family.classes:
            cls = catalog.pipeline_class(family.name, backend)
            assert issubclass(cls, Pipeline) and (cls.name, cls.backend) == (family.name, backend)
            # every runtime module has a measured import cost (not the unknown-module guess)
            assert set(cls.runtime_modules(settings)) <= set(catalog.IMPORT_COSTS_MB), cls


def test_specs_follow_the_settings(make_settings):
    settings = make_settings(backend="onnx", tts_backend="torch", enable_ai_voice_detection=False,
                             preload_models="language", model_concurrency=2)
    specs = {spec.name: spec for spec in catalog.model_specs(settings)}
    assert list(specs) == list(MODEL_NAMES)
    assert specs["tts"].description == "Kokoro-82M text to speech (torch)"
    assert not specs["ai_voice"].enabled and specs["language"].pinned and not specs["tts"].pinned
    assert {spec.max_concurrency for spec in specs.values()} == {2}


def test_the_packaged_kokoro_is_estimated_from_its_files_and_imports(make_settings):
    settings = make_settings(backend="onnx")
    estimate = catalog.estimate(catalog.BY_NAME["tts"], "onnx", settings)
    availability = catalog.pipeline_class("tts", "onnx").availability(settings)
    assert availability.servable and 85 < estimate.weights_mb == availability.weights_mb < 95  # the 92 MB int8 file
    assert estimate.allowance_mb == catalog.BY_NAME["tts"].allowance_mb["onnx"]
    fresh = catalog.IMPORT_COSTS_MB["onnxruntime"] + catalog.IMPORT_COSTS_MB["misaki.espeak"]
    assert estimate.fresh_imports_mb == fresh
    pending = sum(catalog.IMPORT_COSTS_MB[m] for m in ("onnxruntime", "misaki.espeak") if m not in sys.modules)
    assert estimate.imports_mb == pending  # nothing for a runtime this process already imported


def test_import_cost_counts_only_what_is_not_imported_yet():
    assert catalog.import_cost_mb(("sys", "json")) == 0  # imported: free
    assert catalog.import_cost_mb(("torch",), fresh=True) == catalog.IMPORT_COSTS_MB["torch"]
    assert catalog.import_cost_mb(("no.such.module",)) == catalog.UNKNOWN_IMPORT_MB


def test_measurements_are_shared_under_the_model_files_and_the_settings_that_change_its_cost(make_settings):
    family = catalog.BY_NAME["tts"]
    key = catalog.cost_key(family, "onnx", make_settings(backend="onnx"))
    assert key.startswith("tts/onnx/kokoro-v1.0.int8.onnx:sha256=") and "tts_piece_tokens=" in key
    assert catalog.cost_key(family, "onnx", make_settings(backend="onnx", tts_piece_tokens=60)) != key
    assert catalog.cost_key(family, "onnx", make_settings(backend="onnx", log_level="DEBUG")) == key
