"""The background warm-up: which models it builds (a pure plan), and that it builds them without holding anyone."""
from __future__ import annotations

from backend.warmup import plan_warm_up, start_warm_up, warm_up
from tests.conftest import fake_spec

ROWS = [{"name": "tts", "enabled": True, "servable": True, "state": "not loaded", "need_mb": 150},
        {"name": "language", "enabled": True, "servable": True, "state": "not loaded", "need_mb": 120},
        {"name": "ai_voice", "enabled": True, "servable": False, "state": "not loaded", "reason": "no export"},
        {"name": "animation", "enabled": False, "servable": False, "state": "not loaded"}]


def test_plan_warms_what_is_servable_and_fits():
    assert plan_warm_up(["tts"], ROWS, used_mb=100, limit_mb=464) == [("tts", "warm")]


def test_plan_counts_each_warmed_model_against_the_next():
    plan = dict(plan_warm_up(["tts", "language"], ROWS, used_mb=200, limit_mb=464))
    assert plan["tts"] == "warm" and plan["language"].startswith("skipped: needs about 120 MB")


def test_plan_skips_unservable_disabled_loaded_and_unknown_models():
    rows = [*ROWS[1:], {**ROWS[0], "state": "loaded"}]
    plan = dict(plan_warm_up(["tts", "ai_voice", "animation", "nope"], rows, used_mb=0, limit_mb=1000))
    assert plan == {"tts": "skipped: already loaded", "ai_voice": "skipped: not servable (no export)",
                    "animation": "skipped: disabled", "nope": "skipped: disabled"}


def test_warm_up_builds_through_the_registry_and_leaves_it_unpinned(registry_factory):
    registry = registry_factory([fake_spec("tts", 20), fake_spec("language", 20)], free_mb=500, ttl_s=-1)
    warm_up(registry, ["tts"])
    states = {row["name"]: row for row in registry.snapshot()}
    assert states["tts"]["state"] == "loaded" and not states["tts"]["pinned"]
    assert states["language"]["state"] == "not loaded"


def test_warm_up_that_does_not_fit_builds_nothing(registry_factory):
    registry = registry_factory([fake_spec("tts", 400)], free_mb=100, ttl_s=-1)
    warm_up(registry, ["tts"])
    assert registry.snapshot()[0]["state"] == "not loaded"


def test_nothing_to_warm_starts_no_thread(registry_factory):
    assert start_warm_up(registry_factory([fake_spec("tts", 20)]), []) is None
