"""The catalog names every configurable family, on every backend, with a class that exists."""
from __future__ import annotations

from backend import catalog
from backend.pipelines.base import Pipeline
from config import MODEL_NAMES


def test_the_catalog_and_the_settings_name_the_same_families():
    assert tuple(catalog.BY_NAME) == MODEL_NAMES


def test_every_family_has_a_class_and_an_estimate_per_backend():
    for family in catalog.FAMILIES:
        assert set(family.classes) == set(family.estimate_mb) == {"torch", "onnx"}
        for backend in family.classes:
            cls = catalog.pipeline_class(family.name, backend)
            assert issubclass(cls, Pipeline) and (cls.name, cls.backend) == (family.name, backend)


def test_specs_follow_the_settings(make_settings):
    settings = make_settings(backend="onnx", tts_backend="torch", enable_ai_voice_detection=False,
                             preload_models="language", model_concurrency=2)
    specs = {spec.name: spec for spec in catalog.model_specs(settings)}
    assert list(specs) == list(MODEL_NAMES)
    assert (specs["tts"].estimate_mb, specs["language"].estimate_mb) == (1190, 120)
    assert specs["tts"].description == "Kokoro-82M text to speech (torch)"
    assert not specs["ai_voice"].enabled and specs["language"].pinned and not specs["tts"].pinned
    assert {spec.max_concurrency for spec in specs.values()} == {2}
