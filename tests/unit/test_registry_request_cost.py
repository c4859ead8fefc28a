"""Costs shaped by the request (issue 24, section 2): a request's activations by its size, learnt from
measured requests as an upper envelope, so a short request fits where a long one would not."""
from __future__ import annotations

import json
import logging
from unittest import mock

import pytest

from backend.errors import BudgetExceeded
from backend.registry.admission import ModelFigures, Outcome, admit
from backend.registry.costs import WINDOW, CostBook
from backend.registry.need import need_for
from backend.registry.spec import Estimate, ModelSpec
from backend.registry.request_cost import TRUSTED, bucket, envelope, request_cost

ALLOWANCE_MB = 150.0  # the family's worst case, before enough is measured
# Real Kokoro int8 request peaks through HTTP (BENCHMARKS, issue 24): short texts ~34 MB, full 100-token pieces ~116.
SHORT, LONG = 12, 100  # tokens of the longest piece
MEASURED = [(SHORT, 34.0), (SHORT, 38.0), (SHORT, 36.0), (LONG, 110.0), (LONG, 116.0), (LONG, 104.0)]


def test_sizes_fall_in_buckets_that_double() -> None:
    assert [bucket(s) for s in (0, 1, 2, 3, 4, 5, 8, 9, 16, 100, 128, 129)] == [0, 0, 1, 2, 2, 3, 3, 4, 4, 7, 7, 8]
    assert bucket(None) > bucket(10**6)


def test_a_request_costs_the_largest_peak_of_its_size_or_smaller() -> None:
    short, long = request_cost(MEASURED, SHORT, ALLOWANCE_MB), request_cost(MEASURED, LONG, ALLOWANCE_MB)
    assert (short.mb, long.mb) == (38.0, 116.0)
    assert "3 measured requests" in short.rule and "6 measured requests" in long.rule
    assert request_cost(MEASURED, None, ALLOWANCE_MB).mb == ALLOWANCE_MB  # unknown size: nothing measured of it


def test_a_size_measured_too_few_times_is_bounded_by_a_larger_one_or_the_allowance() -> None:
    assert request_cost(MEASURED, 40, ALLOWANCE_MB).mb == 116.0  # nothing of 33-64 tokens: the long ones bound it
    assert request_cost(MEASURED[:4], LONG, ALLOWANCE_MB).mb == ALLOWANCE_MB  # one long one only: the allowance
    assert request_cost(MEASURED[:4], 40, ALLOWANCE_MB).rule.startswith("the family's allowance")
    assert request_cost([], SHORT, ALLOWANCE_MB).mb == ALLOWANCE_MB
    # a measured peak above the allowance is kept, never the smaller allowance
    assert request_cost([(LONG, 180.0)], LONG, ALLOWANCE_MB).mb == 180.0


def test_the_envelope_never_falls_as_the_size_grows() -> None:
    samples = MEASURED + [(3, 60.0)] * TRUSTED  # an odd small size that costs more: it bounds the larger ones
    figures = [request_cost(samples, size, ALLOWANCE_MB).mb for size in range(1, 129)]
    assert figures == sorted(figures) and figures[0] == 60.0
    assert [c.mb for c in envelope(MEASURED, ALLOWANCE_MB, "tokens")] == [38.0, 116.0, ALLOWANCE_MB]
    assert "tokens" in envelope(MEASURED, ALLOWANCE_MB, "tokens")[0].rule


def test_a_short_request_fits_where_a_long_one_would_not() -> None:
    """The decision itself: TTS (100 MB, loaded) beside a language request in flight, 464 MB line."""
    language = ModelFigures("language", loaded=True, in_use=1, pinned=False, last_used=1.0, resident_mb=130,
                            headroom_mb=20)
    tts = ModelFigures("tts", loaded=True, in_use=1, pinned=False, last_used=2.0, resident_mb=100, headroom_mb=0)
    used_mb = 88 + 25 + 130 + 40 + 100  # the service with both runtimes and both models in memory
    verdicts = {size: admit([language, tts], name="tts", need_mb=request_cost(MEASURED, size, ALLOWANCE_MB).mb,
                            used_mb=used_mb, limit_mb=464).outcome for size in (SHORT, LONG)}
    assert verdicts == {SHORT: Outcome.FITS, LONG: Outcome.WAIT}  # the long one waits for language to finish


def test_an_outlier_of_one_size_ages_out_and_leaves_other_sizes_alone(tmp_path) -> None:
    book = CostBook(tmp_path)
    for size, peak in MEASURED:
        book.record("tts", request_peak_mb=peak, request_size=size)
    book.record("tts", request_peak_mb=160.0, request_size=SHORT)  # a one-off: "9" * 80 in a short piece
    cost = lambda size: request_cost(CostBook(tmp_path).get("tts").samples, size, ALLOWANCE_MB).mb  # noqa: E731
    assert cost(SHORT) == 160.0 and cost(LONG) == 160.0  # fresh: it counts, for its size and larger ones
    for i in range(WINDOW):
        book.record("tts", request_peak_mb=36.0 if i % 2 else 112.0, request_size=SHORT if i % 2 else LONG)
    assert (cost(SHORT), cost(LONG)) == (36.0, 112.0)  # across a restart too (a new CostBook reads the file)


def test_sizes_are_kept_with_their_peaks_and_the_format_before_sizes_still_reads(tmp_path) -> None:
    CostBook(tmp_path).record("tts", request_peak_mb=40.0, request_size=SHORT)
    assert CostBook(tmp_path).get("tts").samples == [(SHORT, 40.0)]
    (tmp_path / "costs.json").write_text(json.dumps({"k": {"measured_mb": 100.0, "request_peaks": [5.0, 6.0]}}))
    assert CostBook(tmp_path).get("k").samples == [(None, 5.0), (None, 6.0)]  # unknown sizes: the largest bucket


def test_a_build_measured_after_a_restart_does_not_hide_the_requests_the_file_kept(tmp_path) -> None:
    for size, peak in MEASURED:
        CostBook(tmp_path).record("tts", request_peak_mb=peak, request_size=size)
    restarted = CostBook(tmp_path)
    restarted.record("tts", measured_mb=140.0, peak_load_mb=170.0)  # its own build, no request yet
    assert restarted.get("tts").samples == MEASURED and restarted.get("tts").measured_mb == 140.0
    assert request_cost(restarted.get("tts").samples, SHORT, ALLOWANCE_MB).mb == 38.0


def test_a_request_of_unknown_size_counts_as_the_largest_its_model_can_ask(tmp_path) -> None:
    book = CostBook(tmp_path)
    for size, peak in MEASURED:
        book.record("tts", request_peak_mb=peak, request_size=size)
    estimate = lambda: Estimate(weights_mb=100, allowance_mb=ALLOWANCE_MB)  # noqa: E731
    capped = ModelSpec(name="tts", factory=lambda: None, estimate=estimate, size_cap=100, size_unit="tokens")
    assert need_for(capped, "tts", book).request.mb == 116.0  # the 65-128 bucket's largest (captions, warm-up)
    unbounded = ModelSpec(name="tts", factory=lambda: None, estimate=estimate)
    assert need_for(unbounded, "tts", book).request.mb == ALLOWANCE_MB  # above every measured size


@pytest.mark.parametrize("sizes", [[1.0], ["x", 1.0], [-1.0, 2.0]], ids=["too-few", "not-a-number", "negative"])
def test_a_cost_file_with_broken_sizes_is_ignored_with_one_warning(tmp_path, caplog, sizes) -> None:
    (tmp_path / "costs.json").write_text(json.dumps({"k": {"request_peaks": [5.0, 6.0], "request_sizes": sizes}}))
    book = CostBook(tmp_path)
    with caplog.at_level(logging.WARNING, logger="backend.registry.costs"):
        assert book.get("k") is None and book.get("k") is None
    assert len([r for r in caplog.records if "ignoring" in r.message]) == 1


# --- through the registry: the simulated worker of the invariant test -------------------------------
def test_through_the_registry_a_short_tts_request_is_served_where_a_long_one_waits(tmp_path) -> None:
    from tests.unit import test_registry_invariant as sim
    models = {"tts": sim.Model("onnx", 100, {"short": 30, "long": 110, "numeric": 110}),
              "language": sim.Model("ct2", 130, {"short": 20, "long": 20, "numeric": 20}),
              "ai_voice": sim.Model("onnx", 60, {"short": 10, "long": 10, "numeric": 10})}
    with mock.patch.dict(sim.MODELS, models):
        world = sim.World(str(tmp_path))
        try:
            for kind in ("short", "long") * TRUSTED:  # TTS alone: its requests measured by size
                assert sim.request(world, "tts", kind) == kind
            world.recycle()  # a fresh worker, the cost file kept
            held = world.registry.lease("language", size=5.0)  # a language request in flight
            try:
                with pytest.raises(BudgetExceeded) as refused:
                    sim.request(world, "tts", "long")  # 88 + 25 + 130 + 20 + 40 + 100 + 110 > 464
                assert "language (in use by 1 request(s)" in refused.value.message
                assert refused.value.details["request_mb"] == 110
                assert sim.request(world, "tts", "short") == "short"  # ... + 30 fits: served beside it
                with pytest.raises(BudgetExceeded) as refused:  # TTS loaded now: the long one is still refused
                    sim.request(world, "tts", "long")
                assert "activations" in refused.value.message and "size 100" in refused.value.message
            finally:
                held.release()
            assert sim.request(world, "tts", "long") == "long"  # nothing else in flight: served
            row = {r["name"]: r for r in world.registry.snapshot()}["tts"]
            assert (row["request_mb"], row["request_size"]) == (110.0, 100)
            assert row["request_rule"].startswith("largest of") and row["cost"]["request"]["by_size"]
            assert world.process.worst_used_mb <= sim.BUDGET_MB
        finally:
            world.close()
