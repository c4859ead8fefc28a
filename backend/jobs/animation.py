"""The animation job: AnimationPipeline run in the job's own process, and what one job is expected to cost.

The web worker never builds the pipeline: it checks the request, queues it, and this function
runs wherever jobs run (a local child process, or an RQ worker). The pipeline reads its networks
stage by stage and frees each (docs/BENCHMARKS.md "Animation"), so the job's peak is what the
registry reserves for it while it runs.
"""
from __future__ import annotations

from typing import Any

from backend.jobs.context import JobCancelled, JobContext

KIND = "animation"
RESULT_FACTS = ("frames", "seconds", "width", "height", "size", "preprocess", "seconds_per_frame", "dtype",
                "batch_size")


def need_mb(size: int, measured_peak_mb: float | None) -> float:
    """Memory one job's process is expected to reach: the catalog's figure for its size, or more if measured so."""
    from backend.catalog import ANIMATION_JOB_MB

    return max(float(ANIMATION_JOB_MB[size]), float(measured_peak_mb or 0.0))


def animate(ctx: JobContext) -> dict[str, Any]:
    """Portrait + 16 kHz speech in the context -> the MP4 at ctx.output_path; returns the video's facts."""
    from backend.pipelines.animation.pipeline import AnimationPipeline
    from backend.pipelines.animation.pipeline import JobCancelled as PipelineCancelled

    pipeline = AnimationPipeline(ctx.settings, progress=ctx.progress, cancelled=ctx.cancelled)
    try:
        pipeline.load()
        result = pipeline({"image": ctx.image, "audio": ctx.audio, "output_path": ctx.output_path, **ctx.options})
    except PipelineCancelled as exc:
        raise JobCancelled(str(exc)) from exc
    finally:
        pipeline.close()
    return {key: result[key] for key in RESULT_FACTS if key in result}
