"""Threads against a CPU quota: Kokoro ONNX synthesis with 1 and 2 intra-op threads inside a cgroup CPU quota.

    sudo .venv/bin/python scripts/bench_quota_threads.py --quotas 0.5,1.0 --threads 1,2 --repeat 3

Each run is a fresh process moved into a cgroup v1 `cpu` group (or a v2 group with cpu.max) whose
quota is the given CPUs per 100 ms period; it builds the TTS pipeline (the export folder with the
English voices when provisioned, else the packaged model), synthesises an ordinary two-sentence
text once to warm up, then three times measured: wall seconds, CPU-seconds, and the group's
throttled time (cpu.stat) per second of audio. Variants interleave (quota x threads x repeat).
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = "The weather was calm this morning. We walked along the river before the rain began."
CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from config import build_settings
from backend.api.schemas.tts import validate_request
from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
settings = build_settings(inference_threads={threads}, prometheus_multiproc_dir=None)
pipe = KokoroOnnxPipeline(settings)
pipe.load()
voice = "af_heart" if "af_heart" in pipe.voices.names else pipe.voices.names[0]
def once():
    features = pipe.preprocess(validate_request(settings, text={text!r}, voice=voice, fmt="pcm", lang="en-us"))
    return sum(block.size for block in pipe.run(features).blocks) / 24000
once()
wall, used, audio = time.monotonic(), cpu(), 0.0
for _ in range(3):
    audio += once()
print(json.dumps({{"wall_s": time.monotonic() - wall, "cpu_s": cpu() - used, "audio_s": audio}}))
"""


def group(quota: float) -> Path:
    v1 = Path("/sys/fs/cgroup/cpu")
    if v1.is_dir() and (v1 / "cpu.cfs_quota_us").exists():
        path = v1 / f"bench-quota-{os.getpid()}"
        path.mkdir(exist_ok=True)
        (path / "cpu.cfs_period_us").write_text("100000")
        (path / "cpu.cfs_quota_us").write_text(str(int(quota * 100000)))
        return path
    path = Path("/sys/fs/cgroup") / f"bench-quota-{os.getpid()}"
    path.mkdir(exist_ok=True)
    (path / "cpu.max").write_text(f"{int(quota * 100000)} 100000")
    return path


def throttled_s(path: Path) -> float:
    stat = dict(line.split() for line in (path / "cpu.stat").read_text().splitlines())
    if "throttled_time" in stat:
        return int(stat["throttled_time"]) / 1e9
    return int(stat.get("throttled_usec", 0)) / 1e6


def run(quota: float, threads: int) -> dict:
    path = group(quota)
    try:
        code = CHILD.format(root=str(ROOT), threads=threads, text=TEXT)
        before = throttled_s(path)
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                preexec_fn=lambda: (path / "cgroup.procs").write_text(str(os.getpid())))
        out, _ = proc.communicate(timeout=1800)
        row = json.loads(out.strip().splitlines()[-1])
        row["throttled_s"] = throttled_s(path) - before
        return row
    finally:
        time.sleep(0.2)
        path.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quotas", default="0.5,1.0")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    quotas = [float(q) for q in args.quotas.split(",")]
    counts = [int(t) for t in args.threads.split(",")]
    results: dict[tuple[float, int], list[dict]] = {(q, t): [] for q in quotas for t in counts}
    for _ in range(args.repeat):
        for q in quotas:
            for t in counts:
                results[(q, t)].append(run(q, t))
    print("| quota (CPU) | threads | wall s (3 syntheses) | CPU-s | CPU-s per audio s | throttled s | wall vs 1 thread |")
    print("|---|---|---|---|---|---|---|")
    for q in quotas:
        base = statistics.median(r["wall_s"] for r in results[(q, counts[0])])
        for t in counts:
            rows = results[(q, t)]
            wall = statistics.median(r["wall_s"] for r in rows)
            per_audio = statistics.median(r["cpu_s"] / r["audio_s"] for r in rows)
            print(f"| {q} | {t} | {wall:.1f} | {statistics.median(r['cpu_s'] for r in rows):.1f} | {per_audio:.2f} | "
                  f"{statistics.median(r['throttled_s'] for r in rows):.1f} | {wall / base:.2f} |")


if __name__ == "__main__":
    main()
