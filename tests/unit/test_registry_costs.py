"""Costs that measure, not ratchet: the last WINDOW request peaks, not the largest ever; a broken cost file ignored once.

The figure by request size is tested in test_registry_request_cost.py."""
from __future__ import annotations

import json
import logging

import pytest

from backend.registry.costs import WINDOW, CostBook, MeasuredCost


def test_a_one_off_outlier_stops_counting_after_a_window_of_ordinary_requests(tmp_path) -> None:
    book = CostBook(tmp_path)
    for _ in range(5):
        book.record("tts", request_peak_mb=96)
    book.record("tts", request_peak_mb=141)  # "9" * 400
    assert book.get("tts").request_peak_mb == 141  # fresh: it counts (admission stays safe)
    ordinary = 0
    while book.get("tts").request_peak_mb != 96 and ordinary < 2 * WINDOW:
        book.record("tts", request_peak_mb=96)
        ordinary += 1
    assert ordinary == WINDOW
    assert CostBook(tmp_path).get("tts").request_peak_mb == 96  # and across a restart


def test_requests_that_really_cost_more_keep_counting(tmp_path) -> None:
    book = CostBook(tmp_path)
    for i in range(40):
        book.record("tts", request_peak_mb=141 if i % 20 == 0 else 96)  # one in twenty is long: a real share
    assert book.get("tts").request_peak_mb == 141
    assert len(book.get("tts").request_peaks) == WINDOW


def test_build_figures_keep_their_largest_value(tmp_path) -> None:
    book = CostBook(tmp_path)
    book.record("k", measured_mb=100, peak_load_mb=120)
    book.record("k", measured_mb=90, peak_load_mb=110, request_peak_mb=30)
    record = CostBook(tmp_path).get("k")
    assert (record.measured_mb, record.peak_load_mb, record.request_peak_mb) == (100, 120, 30)
    assert record.cost_mb() == 130


def test_the_format_before_the_window_still_reads(tmp_path) -> None:
    (tmp_path / "costs.json").write_text(json.dumps({"k": {
        "measured_mb": 100.0, "peak_load_mb": 101.0, "request_peak_mb": 5.0, "pid": 1, "at": 0.0}}))
    assert CostBook(tmp_path).get("k").request_peaks == (5.0,)


@pytest.mark.parametrize("content", [
    "{not json", "[]", json.dumps({"k": "text"}), json.dumps({"k": {"measured_mb": -5}}),
    json.dumps({"k": {"measured_mb": 1e9}}), json.dumps({"k": {"request_peaks": [10, "x"]}}),
    json.dumps({"k": {"measured_mb": 100}, "j": {"peak_load_mb": True}}),
], ids=["not-json", "not-an-object", "record-not-an-object", "negative", "implausible", "peak-not-a-number",
        "one-bad-record"])
def test_a_broken_or_implausible_cost_file_is_ignored_with_one_warning(tmp_path, caplog, content) -> None:
    (tmp_path / "costs.json").write_text(content)
    book = CostBook(tmp_path)
    with caplog.at_level(logging.WARNING, logger="backend.registry.costs"):
        for _ in range(3):
            assert book.get("k") is None and book.get("j") is None
    assert len([r for r in caplog.records if "ignoring" in r.message]) == 1
    book.record("k", measured_mb=80)  # the next measurement replaces the broken file
    assert CostBook(tmp_path).get("k").measured_mb == 80


def test_the_boot_figure_of_a_worker_is_persisted_latest_first(tmp_path) -> None:
    CostBook(tmp_path).record_boot(91.5)
    CostBook(tmp_path).record_boot(88.0)
    assert CostBook(tmp_path).boot_mb() == 88.0
    assert CostBook(None).boot_mb() is None


def test_a_record_shows_the_figure_admission_uses() -> None:
    record = MeasuredCost(measured_mb=100, request_peaks=(10.0, 20.0, 30.0))
    assert record.to_json()["request_peak_mb"] == record.request_peak_mb == 30.0
