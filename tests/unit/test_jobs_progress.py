"""Progress of a job: percent by stage, seconds per frame without the first batch, ETA fallbacks."""
from __future__ import annotations

from backend.jobs.progress import ProgressTracker, eta_s, finished_progress, percent, seconds_per_frame


def test_percent_by_stage_and_frames():
    assert percent("face", 0, 1) == 0.0
    assert percent("face", 1, 1) == 2.0
    assert percent("coefficients", 1, 2) == 7.5
    assert percent("render", 0, 10) == 10.0
    assert percent("render", 5, 10) == 54.5
    assert percent("encode", 10, 10) == 99.0
    assert percent("render", 3, 0) == 10.0  # no total: nothing done yet
    assert percent("unknown", 3, 4) == 0.0


def test_seconds_per_frame_excludes_the_first_batch():
    assert seconds_per_frame([(0.0, 0)]) is None
    assert seconds_per_frame([(0.0, 0), (80.0, 2)]) is None  # only the setup batch
    assert seconds_per_frame([(0.0, 0), (80.0, 2), (100.0, 4), (120.0, 6)]) == 10.0


def test_eta_prefers_this_jobs_speed_then_the_last_jobs():
    assert eta_s(frames_left=10, measured_s_per_frame=2.0, previous_s_per_frame=9.0) == 20.0
    assert eta_s(frames_left=10, measured_s_per_frame=None, previous_s_per_frame=3.0) == 30.0
    assert eta_s(frames_left=10, measured_s_per_frame=None, previous_s_per_frame=None) is None


def test_tracker_never_goes_back_and_counts_render_marks():
    tracker = ProgressTracker(previous_s_per_frame=5.0)
    tracker.mark("face", 1, 1, now=0.0)
    assert tracker.snapshot()["eta_s"] is None  # frames unknown before the render
    tracker.mark("render", 0, 6, now=1.0)
    assert tracker.snapshot()["eta_s"] == 30.0  # the last job's speed
    tracker.mark("render", 2, 6, now=61.0)
    first = tracker.mark("encode", 2, 6, now=62.0)
    snap = tracker.mark("render", 4, 6, now=81.0)
    assert snap["eta_s"] == 20.0  # (81 - 61) / 2 frames = 10 s per frame, 2 frames left
    assert snap["percent"] >= first["percent"]
    again = tracker.mark("face", 0, 1, now=82.0)  # a late mark of an earlier stage
    assert again["percent"] == snap["percent"]


def test_finished_progress():
    last = {"stage": "render", "done": 2, "total": 4, "percent": 54.5, "eta_s": 12.0}
    assert finished_progress(last, "done")["percent"] == 100.0
    cancelled = finished_progress(last, "cancelled")
    assert cancelled["percent"] == 54.5 and cancelled["eta_s"] is None
