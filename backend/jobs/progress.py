"""A job's progress: which stage, how far, what percent of the whole, and how long until done.

Pure functions of the marks a job reports (`progress(stage, done, total)` from the pipeline) and
the clock: the job's process computes them, the record stores the result, every reader shows the
same numbers. Rounded once, here.

Percent: the stages before the render are short and get a fixed share (face 2, 3DMM 3,
coefficients 5); rendering and encoding run batch by batch together and share the rest by frames.
ETA: remaining frames times the seconds per frame measured in this job, its first render batch
excluded (it pays the kernels' one-time setup: 30-80 s on 2 cores); until two batches have
finished, the seconds per frame of the last finished job of the same shape, else unknown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: stage -> (percent before it, its share); render and encode advance together, frame by frame
STAGE_PERCENT: dict[str, tuple[float, float]] = {
    "queued": (0.0, 0.0), "face": (0.0, 2.0), "3dmm": (2.0, 3.0), "coefficients": (5.0, 5.0),
    "render": (10.0, 89.0), "encode": (10.0, 89.0),
}
FRAME_STAGES = ("render", "encode")
DONE_PERCENT = 100.0


def percent(stage: str, done: int, total: int) -> float:
    """Percent of the whole job once `done` of `total` steps of `stage` are finished (unknown stages: 0)."""
    before, share = STAGE_PERCENT.get(stage, (0.0, 0.0))
    fraction = min(1.0, max(0.0, done / total)) if total > 0 else 0.0
    return round(before + share * fraction, 1)


def seconds_per_frame(marks: list[tuple[float, int]]) -> float | None:
    """Render seconds per frame from (time, frames rendered) marks, the first batch excluded; None until two batches."""
    if len(marks) < 3:  # the start mark, the first batch (setup), at least one more batch
        return None
    (t0, f0), (t1, f1) = marks[1], marks[-1]
    return (t1 - t0) / (f1 - f0) if f1 > f0 else None


def eta_s(*, frames_left: int, measured_s_per_frame: float | None, previous_s_per_frame: float | None) -> float | None:
    """Seconds until the job is done, from this job's speed, else the last job's; None when neither is known."""
    rate = measured_s_per_frame if measured_s_per_frame is not None else previous_s_per_frame
    if rate is None:
        return None
    return round(max(0, frames_left) * rate, 1)


@dataclass
class ProgressTracker:
    """A running job's progress, fed the pipeline's marks; `snapshot()` is what the record stores."""

    previous_s_per_frame: float | None = None  # the last finished job's, for an ETA before our own
    stage: str = "queued"
    done: int = 0
    total: int = 0
    best_percent: float = 0.0  # never goes back (render and encode alternate per batch)
    frames: int | None = None
    render_marks: list[tuple[float, int]] = field(default_factory=list)

    def mark(self, stage: str, done: int, total: int, now: float) -> dict[str, Any]:
        self.stage, self.done, self.total = stage, done, total
        if stage in FRAME_STAGES:
            self.frames = total
        if stage == "render":
            self.render_marks.append((now, done))
        self.best_percent = max(self.best_percent, percent(stage, done, total))
        return self.snapshot()

    @property
    def measured_s_per_frame(self) -> float | None:
        return seconds_per_frame(self.render_marks)

    def snapshot(self) -> dict[str, Any]:
        rendered = self.render_marks[-1][1] if self.render_marks else 0
        frames_left = (self.frames - rendered) if self.frames is not None else None
        eta = None if frames_left is None else eta_s(frames_left=frames_left,
                                                     measured_s_per_frame=self.measured_s_per_frame,
                                                     previous_s_per_frame=self.previous_s_per_frame)
        return {"stage": self.stage, "done": self.done, "total": self.total, "percent": self.best_percent,
                "eta_s": eta}


def queued_progress() -> dict[str, Any]:
    return {"stage": "queued", "done": 0, "total": 0, "percent": 0.0, "eta_s": None}


def finished_progress(previous: dict[str, Any] | None, state: str) -> dict[str, Any]:
    """The last marks kept, percent 100 and no ETA for a done job; a failed or cancelled one keeps its percent."""
    progress = dict(previous or queued_progress())
    progress["eta_s"] = None if state != "done" else 0.0
    if state == "done":
        progress["percent"] = DONE_PERCENT
    return progress
