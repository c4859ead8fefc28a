"""The registry on real memory: fake pipelines allocate real, touched pages."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from backend.errors import BudgetExceeded, ModelBusy, ModelDisabled, ModelInUse, ModelUnavailable, NotFound
from backend.memory import readings
from backend.registry import ModelState
from tests.conftest import BrokenPipeline, FakeHeapPipeline, FakePipeline, fake_spec


def test_nothing_is_built_until_first_use(registry_factory):
    registry = registry_factory([fake_spec("a", 20)])
    assert registry.state("a") is ModelState.NOT_LOADED
    with registry.acquire("a") as pipe:
        assert pipe({"x": 1}) == {"sum": 1000.0}
        assert registry.state("a") is ModelState.LOADED


def test_build_cost_is_measured_on_real_rss(registry_factory):
    registry = registry_factory([fake_spec("a", 80, estimate_mb=5)])
    registry.load("a")
    row = next(r for r in registry.snapshot() if r["name"] == "a")
    assert 70 <= row["measured_mb"] <= 95
    assert row["anon_mb"] >= 70
    assert row["peak_load_mb"] >= row["measured_mb"] - 1
    assert row["cost_mb"] >= 70  # the measurement replaced the 5 MB estimate
    assert row["load_s"] is not None and row["use_count"] == 0 and row["loads"] == 1  # a load is not a use


def test_only_a_request_through_a_lease_is_a_use_or_a_first_use_measurement(registry_factory):
    registry = registry_factory([fake_spec("a", 20, cls=TransientPipeline)])

    def row():
        return next(r for r in registry.snapshot() if r["name"] == "a")

    registry.load("a")
    registry.load("a")  # loading what is loaded: still no use
    assert (row()["use_count"], row()["first_use_mb"], row()["request_peak_mb"]) == (0, None, None)
    with registry.acquire("a") as pipe:
        pipe(None)
    assert row()["use_count"] == 1 and row()["first_use_mb"] is not None
    assert row()["request_peak_mb"] >= 100  # the request's 120 MB of activations, not the load


def test_eight_concurrent_first_requests_build_once(registry_factory):
    registry = registry_factory([ModelSpecSlow := fake_spec("a", 10, load_s=0.3)])
    FakePipeline.builds = 0
    barrier = threading.Barrier(8)
    seen: list[int] = []

    def request() -> None:
        barrier.wait()
        with registry.acquire("a") as pipe:
            seen.append(id(pipe))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert FakePipeline.builds == 1
    assert len(seen) == 8 and len(set(seen)) == 1
    assert next(r for r in registry.snapshot() if r["name"] == "a")["use_count"] == 8
    assert ModelSpecSlow.name == "a"


def test_a_failed_build_is_shared_by_its_waiters_and_retried_later(registry_factory):
    registry = registry_factory([fake_spec("bad", 1, load_s=0.2, cls=BrokenPipeline)])
    errors: list[Exception] = []

    def request() -> None:
        try:
            registry.load("bad")
        except ModelUnavailable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4 and len({id(e) for e in errors}) == 1
    assert "weights file is corrupt" in errors[0].message
    assert registry.state("bad") is ModelState.NOT_LOADED
    with pytest.raises(ModelUnavailable):
        registry.load("bad")


def test_idle_models_are_evicted_least_recently_used_first(registry_factory):
    registry = registry_factory([fake_spec("a", 60), fake_spec("b", 60), fake_spec("c", 60)], free_mb=150)
    registry.load("a")
    registry.load("b")
    with registry.acquire("a"):
        pass  # a is now more recent than b
    registry.load("c")  # needs 60: b, the least recently used, goes
    assert registry.state("b") is ModelState.NOT_LOADED
    assert registry.state("a") is ModelState.LOADED
    assert registry.state("c") is ModelState.LOADED


def test_a_model_in_use_is_never_evicted_and_without_a_queue_timeout_the_request_is_refused(registry_factory):
    registry = registry_factory([fake_spec("a", 100), fake_spec("b", 100)], free_mb=150)
    registry.queue_timeout_s = 0  # QUEUE_TIMEOUT_S=0: refuse at once rather than wait for a to finish
    with registry.acquire("a"):
        with pytest.raises(BudgetExceeded) as caught:
            registry.load("b")
        assert registry.state("a") is ModelState.LOADED
    error = caught.value
    assert error.status == 503 and error.headers["Retry-After"] == str(registry.retry_after_s)
    assert error.details["model"] == "b" and error.details["needed_mb"] == 100
    assert error.details["budget_mb"] == round(registry.effective_budget_mb)
    assert registry.state("b") is ModelState.NOT_LOADED
    registry.load("b")  # once a is idle, it can be evicted to make room
    assert registry.state("a") is ModelState.NOT_LOADED


def test_a_build_waits_for_the_model_in_use_then_evicts_it_holding_new_requests_back(registry_factory):
    """Issue 11: Kokoro and whisper-base do not fit side by side in 512 MB; mixed clients refused each other."""
    registry = registry_factory([fake_spec("a", 100), fake_spec("b", 100)], free_mb=150)
    registry.queue_timeout_s = 60
    events: list[tuple[str, str]] = []
    registry.subscribe(lambda event, name, facts: events.append((event, name)))
    first = registry.lease("a")
    builder = threading.Thread(target=registry.load, args=("b",))
    builder.start()
    _wait_until(lambda: registry.lifecycle.handles["a"].draining == 1)  # b waits for a, a stays loaded meanwhile
    assert registry.state("a") is ModelState.LOADED and registry.state("b") is ModelState.LOADING
    got_a = threading.Event()
    late = threading.Thread(target=lambda: registry.acquire("a").__enter__() and got_a.set())
    late.start()
    assert not got_a.wait(0.5)  # a new request for a waits for b's build (it would starve it otherwise)
    first.release()
    builder.join(timeout=30)
    late.join(timeout=30)
    assert got_a.is_set() and not builder.is_alive()
    # a went idle, was evicted for b, and the late request built a again in turn (b was idle by then)
    assert events == [("load", "a"), ("evict", "a"), ("load", "b"), ("evict", "b"), ("load", "a")]
    assert registry.lifecycle.handles["a"].draining == 0


def test_requests_held_back_for_a_build_count_in_the_models_queue(registry_factory):
    """Held-back requests wait in a thread each: MAX_QUEUE bounds them like requests waiting for a slot."""
    registry = registry_factory([fake_spec("a", 100), fake_spec("b", 100)], free_mb=150)
    registry.queue_timeout_s, registry.max_queue = 60, 0
    first = registry.lease("a")
    builder = threading.Thread(target=registry.load, args=("b",))
    builder.start()
    _wait_until(lambda: registry.lifecycle.handles["a"].draining == 1)
    with pytest.raises(ModelBusy, match="MAX_QUEUE"):
        registry.lease("a")
    first.release()
    builder.join(timeout=30)
    assert registry.state("b") is ModelState.LOADED and registry.slots.waiting("a") == 0


def test_a_model_is_loaded_and_held_before_its_builds_locks_go(registry_factory):
    """The life-cycle run: a TTS admission ran in the moment between language's build releasing the locks and
    language being marked loaded, saw its 60 MB as memory nobody owns (not a model to wait for) and refused."""
    registry = registry_factory([fake_spec("a", 20)])
    seen: list[tuple[str, int]] = []  # the load event fires once the admission locks are released
    registry.subscribe(lambda event, name, facts: event == "load" and seen.append(
        (registry.state(name).value, registry.lifecycle.handles[name].in_use)))
    lease = registry.lease("a")
    assert seen == [("loaded", 1)]
    lease.release()


def test_a_build_waiting_for_a_model_in_use_is_refused_after_the_queue_timeout(registry_factory):
    registry = registry_factory([fake_spec("a", 100), fake_spec("b", 100)], free_mb=150)
    registry.queue_timeout_s = 0.2
    with registry.acquire("a"):
        with pytest.raises(BudgetExceeded) as caught:
            registry.load("b")
        assert "a did not finish within 0.2 s (QUEUE_TIMEOUT_S)" in caught.value.message
        assert caught.value.headers["Retry-After"] == str(registry.retry_after_s)
        assert registry.state("a") is ModelState.LOADED and registry.lifecycle.handles["a"].draining == 0
    with registry.acquire("a"):  # nothing is left held back
        pass


class TransientPipeline(FakePipeline):
    """A model whose requests allocate 120 MB of activations on top of its weights."""

    def run(self, features):
        activations = np.ones(120 * readings.MB // 8)
        return float(activations[:10].sum())


def test_a_request_peak_is_measured_and_kept_free_for_the_next_request(registry_factory):
    spec = fake_spec("tts", 30, cls=TransientPipeline)
    registry = registry_factory([spec, fake_spec("other", 60)], free_mb=200)
    with registry.acquire("tts") as pipe:
        pipe(None)
    row = next(r for r in registry.snapshot() if r["name"] == "tts")
    assert 110 <= row["request_peak_mb"] <= 140, row  # the activations, measured on real RSS
    assert row["cost_mb"] >= 30 + 110
    # Its build made room for the estimate's activations (none), so 60 MB more fits beside the idle
    # tts; its next request makes room for the 120 MB measured first: the idle model is evicted
    # rather than letting that request push the worker over budget.
    registry.load("other")
    assert registry.state("tts") is ModelState.LOADED
    with registry.acquire("tts") as pipe:
        assert registry.state("other") is ModelState.NOT_LOADED
        pipe(None)


def test_a_model_bigger_than_the_budget_is_refused_without_evicting_others(registry_factory):
    registry = registry_factory([fake_spec("small", 20), fake_spec("huge", 5000)], free_mb=200)
    registry.load("small")
    with pytest.raises(BudgetExceeded):
        registry.load("huge")
    assert registry.state("small") is ModelState.LOADED  # evicting it could not have helped


def test_pinned_models_are_never_evicted(registry_factory):
    registry = registry_factory([fake_spec("pin", 80, pinned=True), fake_spec("b", 100)], free_mb=150)
    registry.load_pinned()
    assert registry.pinned_ready()
    with pytest.raises(BudgetExceeded):
        registry.load("b")
    assert registry.state("pin") is ModelState.LOADED


def test_unload_gives_heap_memory_back_to_the_os(registry_factory):
    """Freed small blocks between live objects stay in glibc's heap unless malloc_trim runs."""
    registry = registry_factory([fake_spec("heap", 80, cls=FakeHeapPipeline)])
    baseline = readings.rss_mb()
    thread = threading.Thread(target=registry.load, args=("heap",))  # a gthread worker builds in a thread
    thread.start()
    thread.join()
    loaded = readings.rss_mb()
    assert loaded - baseline >= 60
    assert registry.unload("heap") is True
    assert readings.rss_mb() - baseline < 20


def test_without_malloc_trim_the_same_memory_stays(registry_factory):
    """The control for the test above: gc alone leaves the fragmented heap resident."""
    pipe = FakeHeapPipeline("heap", 80)
    baseline = readings.rss_mb()
    thread = threading.Thread(target=pipe.load)
    thread.start()
    thread.join()
    pipe.close()
    import gc
    gc.collect()
    held = readings.rss_mb() - baseline
    readings.malloc_trim()
    trimmed = readings.rss_mb() - baseline
    assert held >= 40 and trimmed < held - 30


def test_ttl_zero_unloads_after_each_use(registry_factory):
    registry = registry_factory([fake_spec("a", 10)], ttl_s=0)
    with registry.acquire("a"):
        assert registry.state("a") is ModelState.LOADED
    assert registry.state("a") is ModelState.NOT_LOADED


def test_idle_ttl_unloads_only_idle_models(registry_factory):
    registry = registry_factory([fake_spec("a", 10), fake_spec("busy", 10)], ttl_s=1)
    registry.load("a")
    with registry.acquire("busy"):
        time.sleep(1.6)  # the sweeper runs every ttl/4 s
        assert registry.state("a") is ModelState.NOT_LOADED
        assert registry.state("busy") is ModelState.LOADED


def test_ttl_minus_one_never_unloads(registry_factory):
    registry = registry_factory([fake_spec("a", 10)], ttl_s=-1)
    registry.load("a")
    assert registry.sweep_idle(now=time.time() + 10**6) == []
    assert registry.state("a") is ModelState.LOADED


def test_unload_refuses_a_model_in_use(registry_factory):
    registry = registry_factory([fake_spec("a", 10)])
    with registry.acquire("a"):
        with pytest.raises(ModelInUse):
            registry.unload("a")
    assert registry.unload("a") is True
    assert registry.unload("a") is False


def test_disabled_and_unknown_models(registry_factory):
    registry = registry_factory([fake_spec("off", 10, enabled=False)])
    assert registry.state("off") is ModelState.DISABLED
    with pytest.raises(ModelDisabled):
        registry.load("off")
    with pytest.raises(NotFound):
        registry.load("nope")


def test_listeners_hear_load_evict_and_refuse(registry_factory):
    registry = registry_factory([fake_spec("a", 60), fake_spec("b", 60), fake_spec("huge", 900)], free_mb=100)
    events: list[tuple[str, str]] = []
    registry.subscribe(lambda event, model, facts: events.append((event, model)))
    registry.load("a")
    registry.load("b")
    with pytest.raises(BudgetExceeded):
        registry.load("huge")
    assert events == [("load", "a"), ("evict", "a"), ("load", "b"), ("refuse", "huge")]


def test_a_model_serves_one_request_at_a_time_and_a_long_wait_is_a_503(registry_factory):
    registry = registry_factory([fake_spec("tts", 5)])
    registry.queue_timeout_s = 0.2
    order: list[str] = []
    with registry.acquire("tts"):
        waiter = threading.Thread(target=lambda: registry.acquire("tts").__enter__() and order.append("second"))
        with pytest.raises(ModelBusy) as caught:
            with registry.acquire("tts"):
                pass
        assert caught.value.status == 503 and caught.value.headers["Retry-After"]
        registry.queue_timeout_s = 5
        waiter.start()
        time.sleep(0.3)
        assert order == []  # still queued behind the running request
    waiter.join(timeout=5)
    assert order == ["second"]


def _wait_until(condition, timeout_s: float = 10.0) -> None:
    """Wait for a state the test caused (a thread reaching the queue), never for a fixed time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


def test_a_full_queue_is_refused_at_once_with_model_busy(registry_factory):
    """MAX_QUEUE: one runs, max_queue wait, the next is a 503 model_busy at once (not after QUEUE_TIMEOUT_S)."""
    registry = registry_factory([fake_spec("tts", 5)])
    registry.queue_timeout_s, registry.max_queue = 60, 1
    served: list[str] = []
    with registry.acquire("tts"):
        waiter = threading.Thread(target=lambda: served.append(registry.lease("tts").release() or "queued"))
        waiter.start()
        _wait_until(lambda: registry.slots.waiting("tts") == 1)
        started = time.monotonic()
        with pytest.raises(ModelBusy) as caught:
            registry.lease("tts")
        assert time.monotonic() - started < 30  # refused, not left waiting for the 60 s queue timeout
        assert "MAX_QUEUE" in caught.value.message and caught.value.headers["Retry-After"]
        assert caught.value.code == "model_busy" and caught.value.status == 503
    waiter.join(timeout=30)
    assert served == ["queued"] and registry.slots.waiting("tts") == 0
    assert next(r for r in registry.snapshot() if r["name"] == "tts")["in_use"] == 0


def test_max_queue_zero_never_waits(registry_factory):
    registry = registry_factory([fake_spec("tts", 5)])
    registry.queue_timeout_s, registry.max_queue = 60, 0
    with registry.acquire("tts"):
        with pytest.raises(ModelBusy, match="MAX_QUEUE"):
            registry.lease("tts")
    with registry.acquire("tts"):
        pass  # free again
