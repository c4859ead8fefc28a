"""The registry's account of jobs run in child processes: evict idle models first, reserve, refuse what never fits."""
from __future__ import annotations

from tests.fakes import fake_spec


def test_admit_job_evicts_idle_models_then_reserves(registry_factory):
    registry = registry_factory([fake_spec("a", 60), fake_spec("b", 60)], free_mb=200)
    registry.load("a")
    registry.load("b")
    assert registry.admit_job("animation", 130)  # only fits once an idle model is gone
    assert sorted(registry.state(n).value for n in ("a", "b")) == ["loaded", "not loaded"]
    assert registry.gate.jobs() == {"animation": 130}
    registry.reserve_job("animation", 0)
    assert registry.gate.jobs() == {}


def test_a_reserved_job_counts_against_model_admissions(registry_factory):
    import pytest

    from backend.errors import BudgetExceeded

    registry = registry_factory([fake_spec("a", 80)], free_mb=150)
    registry.reserve_job("animation", 100)
    with pytest.raises(BudgetExceeded):
        registry.load("a")
    registry.reserve_job("animation", 0)
    registry.load("a")


def test_a_job_waits_while_models_in_use_leave_no_room(registry_factory):
    registry = registry_factory([fake_spec("a", 80)], free_mb=150)
    with registry.acquire("a"):
        assert not registry.admit_job("animation", 100)
        assert registry.state("a").value == "loaded"  # in use: never evicted
    assert registry.gate.jobs() == {}


def test_job_ever_fits_against_the_budget(registry_factory):
    registry = registry_factory([], free_mb=300)
    fits, free = registry.job_ever_fits(200)
    assert fits and free >= 200
    fits, free = registry.job_ever_fits(1100)
    assert not fits and free < 1100


def test_with_rq_jobs_the_web_service_reports_animation_servable_by_the_worker(make_settings):
    from backend import create_app
    from backend.registry import get_registry

    local = {row["name"]: row for row in get_registry(create_app(make_settings(memory_budget_mb=512))).readiness()}
    assert not local["animation"]["servable"]  # no checkpoints here, and ~1.1 GB never fits 512 MB
    app = create_app(make_settings(memory_budget_mb=512, jobs_backend="rq", redis_url="redis://127.0.0.1:1/0"))
    rows = {row["name"]: row for row in get_registry(app).readiness()}
    assert rows["animation"]["servable"] and "RQ jobs worker" in rows["animation"]["source"]
