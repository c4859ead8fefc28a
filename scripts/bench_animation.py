"""Benchmark the animation job: seconds per frame and peak RSS of a fresh job process.

    python -m scripts.bench_animation [--sizes 256 512] [--batches 1 2 4] [--renderers fast plain]
                                      [--dtypes float32 bfloat16] [--seconds 1.0] [--rounds 2]
                                      [--out FILE]

Each variant runs as its own process (like a job of the jobs engine): load, preprocess,
run, postprocess of astronaut.png + `--seconds` of synthetic speech on random-weight official
checkpoints (built once into a temp folder). The child reports steady-state seconds per frame
(render + encode, first batch excluded: it pays oneDNN's one-time kernel setup), CPU seconds per
frame (user + sys of the process / frames: less sensitive to other processes on shared cores),
the whole job's wall time and its peak RSS (VmHWM, backend/memory/readings.py). Variants are interleaved round by round
and the 1-minute load average is recorded with every figure, because other processes share the
cores; compare variants within a round, as ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_job(args: argparse.Namespace) -> dict:
    """One job in this (fresh) process; prints its facts as JSON."""
    from backend.memory.readings import peak_rss_mb
    from backend.pipelines.animation.pipeline import AnimationPipeline
    from config import build_settings
    from scripts.checkpoints.sadtalker import speech_like

    started = time.perf_counter()
    marks: list[tuple[int, float, float]] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "encode":
            marks.append((done, time.perf_counter(), cpu_seconds()))

    settings = build_settings(sadtalker_checkpoint_dir=Path(args.checkpoints), face_model_dir=Path(args.faces),
                              animation_batch_size=args.batch, model_dtype=args.dtype,
                              inference_threads=args.threads, max_animation_seconds=600)
    pipe = AnimationPipeline(settings, progress=progress, fast_renderer=args.renderer == "fast")
    pipe.load()
    image = Path(args.image).read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        result = pipe({"image": image, "audio": speech_like(args.seconds), "output_path": Path(tmp) / "out.mp4",
                       "size": args.size, "seed": 0})
    first, last = marks[0], marks[-1]
    steady_frames = last[0] - first[0]
    peak_mb = peak_rss_mb() or float("nan")
    return {"frames": result["frames"], "dtype": pipe.dtype,
            "s_per_frame": (last[1] - first[1]) / steady_frames if steady_frames else float("nan"),
            "cpu_s_per_frame": (last[2] - first[2]) / steady_frames if steady_frames else float("nan"),
            "first_batch_s": first[1] - started, "job_s": time.perf_counter() - started, "peak_rss_mb": peak_mb,
            "output": f"{result['width']}x{result['height']}"}


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    isa = "avx512_bf16" if "avx512_bf16" in flags else ("avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "?")
    import torch

    return (f"{model}, {os.cpu_count()} vCPU, best ISA {isa}, "
            f"mkldnn bf16 {'yes' if torch.ops.mkldnn._is_mkldnn_bf16_supported() else 'no'}, torch {torch.__version__}, "
            f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--renderers", nargs="+", default=["fast", "plain"])
    parser.add_argument("--dtypes", nargs="+", default=["float32"])
    parser.add_argument("--seconds", type=float, default=1.0, help="audio length per job (25 frames per second)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here too")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoints", help=argparse.SUPPRESS)
    parser.add_argument("--faces", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--renderer", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        print(json.dumps(run_job(args)))
        return 0

    from scripts.checkpoints.sadtalker import build_sadtalker_checkpoints
    from scripts.fetch_face_assets import fetch_face_models, fetch_test_images

    from config import build_settings

    faces = fetch_face_models(build_settings().face_model_root)[0].parent
    image = fetch_test_images(ROOT / ".cache" / "test-images")[0]
    variants = [(size, dtype, renderer, batch) for size in args.sizes for dtype in args.dtypes
                for renderer in args.renderers for batch in args.batches]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sadtalker-") as tmp:
        build_sadtalker_checkpoints(tmp, sizes=args.sizes, mappings=("mapping_00229",))
        for round_index in range(args.rounds):
            for size, dtype, renderer, batch in variants:
                load = os.getloadavg()[0]
                command = [sys.executable, "-m", "scripts.bench_animation", "--job", "--checkpoints", tmp,
                           "--faces", str(faces), "--image", str(image), "--size", str(size), "--batch", str(batch),
                           "--renderer", renderer, "--dtype", dtype, "--seconds", str(args.seconds),
                           "--threads", str(args.threads)]
                done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(done.stderr[-2000:], file=sys.stderr)
                    continue
                facts = json.loads(done.stdout.strip().splitlines()[-1])
                row = {"round": round_index + 1, "size": size, "dtype": facts["dtype"], "renderer": renderer,
                       "batch": batch, "load_1m": round(load, 2), **facts}
                rows.append(row)
                print(json.dumps(row), flush=True)
    table = markdown(rows, args)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [f"Machine: {machine()}  ",
             f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {args.threads} torch threads; "
             f"{args.seconds:g} s of audio per job ({int(args.seconds * 25)} frames); random-weight official checkpoints  ",
             "Reproduce: `python -m scripts.bench_animation " + " ".join(sys.argv[1:]) + "`", "",
             "| round | size | dtype | renderer | batch | load (1 min) | s/frame | CPU s/frame | job s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['round']} | {r['size']} | {r['dtype']} | {r['renderer']} | {r['batch']} | {r['load_1m']} | "
                     f"{r['s_per_frame']:.2f} | {r['cpu_s_per_frame']:.2f} | {r['job_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
