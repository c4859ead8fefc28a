"""Job functions the engine tests inject in place of the animation job (imported by name in the job's process).

`scripted` does what its options say, so a test decides every branch: how many "frames",
whether to wait for a gate file before finishing (the test sees `running` for as long as it
needs), whether to allocate memory (a peak to measure), to fail with a typed error or to crash.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from backend.errors import UnprocessableEntity
from backend.jobs.context import JobCancelled, JobContext

GATE_WAIT_S = 120  # a gate never opened ends the job (a failed test must not leave a process behind)


def _wait_for(path: Path, ctx: JobContext) -> None:
    deadline = time.time() + GATE_WAIT_S
    while not path.exists() and time.time() < deadline:
        if ctx.cancelled():
            raise JobCancelled("cancelled while waiting at the gate")
        time.sleep(0.05)


def scripted(ctx: JobContext) -> dict[str, Any]:
    options = ctx.options
    frames = int(options.get("frames", 3))
    if options.get("pid_file"):
        Path(options["pid_file"]).write_text(str(os.getpid()))
    ctx.progress("face", 0, 1)
    if options.get("fail") == "typed":
        raise UnprocessableEntity("detected no face in the image (scripted)")
    if options.get("fail") == "crash":
        raise RuntimeError("scripted crash")
    ctx.progress("face", 1, 1)
    hold = bytearray(int(options.get("alloc_mb", 0)) * 1024 * 1024)
    for index in range(len(hold) // 4096):
        hold[index * 4096] = 1  # touch every page: resident, not just reserved
    if options.get("gate"):
        _wait_for(Path(options["gate"]), ctx)
    ctx.progress("render", 0, frames)
    part = ctx.output_path.with_name(ctx.output_path.name + ".part")
    with part.open("wb") as out:
        for frame in range(frames):
            if ctx.cancelled():
                raise JobCancelled(f"cancelled after {frame} of {frames} frames")
            out.write(ctx.image or b"")
            ctx.progress("render", frame + 1, frames)
            ctx.progress("encode", frame + 1, frames)
    part.rename(ctx.output_path)
    return {"frames": frames, "audio_samples": int(ctx.audio.size) if ctx.audio is not None else 0,
            "pool_threads": os.environ.get("OMP_NUM_THREADS")}  # what torch and numpy's pools start with


def gated(ctx: JobContext) -> dict[str, Any]:
    """`scripted`, held before its render until JOBS_DIR/gate exists (API tests cannot pass a gate option)."""
    ctx.options = {**ctx.options, "gate": str(ctx.output_path.parent.parent / "gate")}
    return scripted(ctx)
