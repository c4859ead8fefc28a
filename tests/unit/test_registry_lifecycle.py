"""The registry across ordinary events (issue 11): unservable models, runtime imports, rebuilds after an
eviction, measurements shared between workers, and a worker that holds memory it cannot give back."""
from __future__ import annotations

import numpy as np
import pytest

from backend.errors import BudgetExceeded, ModelUnavailable
from backend.memory import readings
from backend.pipelines.base import Availability
from backend.registry import Estimate, ModelRegistry, ModelSpec, ModelState
from backend.registry.costs import CostBook
from tests.conftest import budget_above_now
from tests.fakes import LEAKED, FakePipeline, LeakyPipeline, fake_spec

MB = readings.MB


def _row(registry, name):
    return next(r for r in registry.snapshot() if r["name"] == name)


def test_an_unservable_model_is_refused_before_anything_is_evicted_or_built(registry_factory):
    """Issue 11: one upload for a model without an export evicted the loaded TTS first."""
    built = []
    missing = ModelSpec(name="language", factory=lambda: built.append(1) or FakePipeline("language", 50),
                        estimate=lambda: Estimate(weights_mb=400),
                        availability=lambda: Availability.missing("no exported whisper model", "fetch it"))
    registry = registry_factory([fake_spec("tts", 60), missing], free_mb=100)
    registry.load("tts")
    with pytest.raises(ModelUnavailable) as caught:
        registry.lease("language")
    assert "no exported whisper model" in caught.value.message and caught.value.details["fix"] == "fetch it"
    assert registry.state("tts") is ModelState.LOADED and built == []
    assert _row(registry, "language")["servable"] is False and _row(registry, "language")["fix"] == "fetch it"


class Runtime:
    """A runtime whose import holds real memory, imported once per process like a module."""

    held: list[np.ndarray] = []

    @classmethod
    def import_it(cls) -> None:
        if not cls.held:
            cls.held.append(np.ones(40 * MB // 8))


def test_the_runtime_import_is_measured_apart_from_the_model(registry_factory):
    Runtime.held.clear()
    spec = ModelSpec(name="a", factory=lambda: FakePipeline("a", 30),
                     estimate=lambda: Estimate(weights_mb=30, imports_mb=0 if Runtime.held else 40),
                     import_runtime=Runtime.import_it)
    registry = registry_factory([spec])
    assert _row(registry, "a")["cost"]["imports_mb"] == 40
    registry.load("a")
    row = _row(registry, "a")
    assert 35 <= row["imports_mb"] <= 50 and 25 <= row["measured_mb"] <= 40  # the model's own figure
    assert row["cost"]["imports_mb"] == 0 and row["cost_source"] == "measured here"
    registry.unload("a")
    registry.load("a")  # imported already: the rebuild pays for the model alone
    assert _row(registry, "a")["imports_mb"] < 5
    Runtime.held.clear()


class FirstUseGrows(FakePipeline):
    """Its first request after each load grows its memory by 50 MB (caches), freed on close."""

    def run(self, features):
        if not hasattr(self, "cache"):
            self.cache = np.ones(50 * MB // 8)
        return super().run(features)


def test_the_first_use_is_measured_again_after_an_eviction_and_rebuild(registry_factory):
    """Issue-10 report: first use was measured only when the process's use count was 1."""
    registry = registry_factory([fake_spec("a", 20, cls=FirstUseGrows)])
    with registry.acquire("a") as pipe:
        pipe(None)
    assert 40 <= _row(registry, "a")["first_use_mb"] <= 90
    registry.unload("a")
    registry.load("a")
    assert _row(registry, "a")["first_use_mb"] is None  # a new load: nothing measured yet
    with registry.acquire("a") as pipe:
        pipe(None)
    assert 40 <= _row(registry, "a")["first_use_mb"] <= 90 and _row(registry, "a")["use_count"] == 2


def test_a_second_worker_admits_from_the_first_ones_measurements(tmp_path):
    """Two registries on one state folder: what one measured, the other admits with (and says so)."""
    first = ModelRegistry(budget_above_now(1000), margin_mb=0, ttl_s=-1, costs=CostBook(tmp_path))
    spec = fake_spec("a", 60, estimate_mb=5)  # the estimate is far off: only a measurement is right
    first.register(spec)
    first.load("a")
    second = ModelRegistry(budget_above_now(1000), margin_mb=0, ttl_s=-1, costs=CostBook(tmp_path))
    second.register(spec)
    row = _row(second, "a")
    assert row["state"] == "not loaded" and row["cost_mb"] >= 50
    assert row["cost_source"].startswith("measured by another worker")
    assert _row(first, "a")["cost_source"] == "measured here"
    first.shutdown()
    second.shutdown()


def test_measured_costs_keep_the_largest_figures_and_survive_a_restart(tmp_path):
    book = CostBook(tmp_path)
    book.record("k", measured_mb=100, request_peak_mb=30)
    CostBook(tmp_path).record("k", measured_mb=90, request_peak_mb=50, first_use_mb=120)
    restarted = CostBook(tmp_path).get("k")
    assert (restarted.measured_mb, restarted.request_peak_mb, restarted.first_use_mb) == (100, 50, 120)
    assert restarted.cost_mb() == 150  # steady 100 plus the largest request's 50
    assert not list(tmp_path.glob("*.tmp"))  # written whole, then renamed


def test_an_unwritable_state_folder_keeps_the_figures_in_the_process(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    book = CostBook(blocker / "state")
    book.record("k", measured_mb=10)
    book.record("k", measured_mb=12)
    assert book.get("k").measured_mb == 12
    assert sum("cannot write measured costs" in r.getMessage() for r in caplog.records) == 1


class Recycler:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def _worker(specs, free_mb: float, ttl_s: int = 300) -> tuple[ModelRegistry, Recycler]:
    """A registry started as a Gunicorn worker would be, `free_mb` above what it holds now."""
    registry = ModelRegistry(budget_above_now(free_mb), margin_mb=0, ttl_s=ttl_s)
    for spec in specs:
        registry.register(spec)
    recycle = Recycler()
    registry.start_worker(recycle=recycle).join()
    return registry, recycle


def test_a_worker_holding_memory_it_cannot_give_back_asks_for_a_replacement_once():
    registry, recycle = _worker([fake_spec("tts", 120, cls=LeakyPipeline)], free_mb=200)
    try:
        registry.load("tts")
        registry.unload("tts")  # its 120 MB stay: 200 - 120 free, and it needs 120
        for _ in range(3):
            with pytest.raises(BudgetExceeded) as caught:
                registry.lease("tts")
            error = caught.value
            assert error.headers["Retry-After"] == "1" and error.details["recycling"] is True
            assert "being replaced by a fresh one" in error.message and "retained heap" in error.message
        assert recycle.calls == 1  # asked once per MODEL_TTL_S, however many requests are refused
    finally:
        registry.shutdown()
        LEAKED.clear()


def test_no_replacement_when_a_fresh_worker_could_not_fit_it_either():
    registry, recycle = _worker([fake_spec("small", 10), fake_spec("huge", 5000)], free_mb=200)
    try:
        registry.load("small")
        registry.unload("small")
        with pytest.raises(BudgetExceeded) as caught:
            registry.lease("huge")
        assert recycle.calls == 0 and caught.value.headers["Retry-After"] == str(registry.retry_after_s)
        assert "recycling" not in caught.value.details
    finally:
        registry.shutdown()


def test_an_idle_model_never_blocks_a_replacement_one_in_use_does():
    registry, recycle = _worker([fake_spec("a", 120, cls=LeakyPipeline), fake_spec("pin", 10, pinned=True),
                                 fake_spec("b", 10)], free_mb=200)
    try:
        registry.load("pin")
        registry.load("a")
        registry.unload("a")
        with registry.acquire("b"), pytest.raises(BudgetExceeded) as caught:
            registry.lease("a")
        assert recycle.calls == 0 and "in use by 1 request(s)" in caught.value.message  # b is in flight
        with pytest.raises(BudgetExceeded) as caught:
            registry.lease("a")  # nothing in flight: b (idle) is evicted, pin (idle) comes back in the fresh worker
        assert recycle.calls == 1 and caught.value.details["recycling"] is True
        assert registry.state("b").value == "not loaded"
    finally:
        registry.shutdown()
        LEAKED.clear()


def test_readiness_names_what_can_never_be_admitted(registry_factory):
    registry = registry_factory([fake_spec("ok", 10), fake_spec("huge", 5000)], free_mb=200)
    rows = {row["name"]: row for row in registry.readiness()}
    assert rows["ok"]["servable"] and rows["ok"]["need_mb"] == 10
    assert not rows["huge"]["servable"] and "needs about 5000 MB" in rows["huge"]["reason"]
    assert "BACKEND=onnx" in rows["huge"]["fix"]


def test_under_steady_load_the_first_use_and_the_peaks_are_still_measured(registry_factory):
    """A request queued for the model holds no activations: the one running is measured all the same."""
    import threading

    registry = registry_factory([fake_spec("a", 20, cls=FirstUseGrows)])
    registry.load("a")
    first = registry.lease("a")
    queued_done = threading.Event()

    def queued() -> None:
        with registry.acquire("a") as pipe:  # waits for the slot while the first request runs
            pipe(None)
        queued_done.set()

    thread = threading.Thread(target=queued)
    thread.start()
    first.pipeline(None)
    first.release()
    thread.join(timeout=10)
    assert queued_done.is_set()
    row = _row(registry, "a")
    assert row["use_count"] == 2 and 40 <= row["first_use_mb"] <= 90
    assert row["request_peak_mb"] is not None and row["request_peak_mb"] >= 40


def test_a_request_measured_across_another_models_build_keeps_no_figures(registry_factory):
    """The life-cycle run with whisper-base: a TTS request's peak took in a language build that ran meanwhile
    (RSS is the process's), the CostBook kept the larger figure, and Kokoro never fitted a fresh worker again."""
    registry = registry_factory([fake_spec("a", 20), fake_spec("b", 100)])
    lease = registry.lease("a")  # the first request after a's build, running alone: measured...
    registry.load("b")  # ...but b's 100 MB arrive while it runs
    lease.release()
    row = _row(registry, "a")
    assert row["request_peak_mb"] is None and row["first_use_mb"] is None
    assert registry.costs.get(registry.lifecycle.handles["a"].key).request_peak_mb is None
    with registry.acquire("a"):  # undisturbed: measured
        pass
    assert _row(registry, "a")["request_peak_mb"] is not None


def test_a_build_while_a_request_runs_is_not_shared_as_its_cost(registry_factory):
    registry = registry_factory([fake_spec("a", 20, cls=FirstUseGrows), fake_spec("b", 30)])
    registry.load("a")
    with registry.acquire("a") as pipe:
        pipe(None)  # a request that allocates 50 MB while b builds
        registry.load("b")
    assert registry.costs.get(registry.lifecycle.handles["b"].key) is None  # a's 50 MB are not b's
    assert _row(registry, "b")["cost_source"] == "estimate from files"
    registry.unload("b")
    registry.load("b")  # alone now: measured and shared
    assert 25 <= registry.costs.get(registry.lifecycle.handles["b"].key).measured_mb <= 40


def test_the_first_use_is_not_measured_when_another_model_loaded_in_between(registry_factory):
    registry = registry_factory([fake_spec("a", 20), fake_spec("b", 100)])
    registry.load("a")
    registry.load("b")  # RSS now includes b: a's first use would count it against the RSS before a's load
    with registry.acquire("a"):
        pass
    assert _row(registry, "a")["first_use_mb"] is None
