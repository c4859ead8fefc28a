"""Threads against a CPU quota: Kokoro ONNX synthesis with 1 and 2 intra-op threads inside a cgroup CPU quota.

    sudo .venv/bin/python scripts/bench_quota_threads.py --quotas 0.5,1.0 --threads 1,2 --repeat 3

Each run is a fresh process moved into a cgroup v1 `cpu` group (or a v2 group with cpu.max) whose
quota is the given CPUs per 100 ms period; it builds the TTS pipeline (the export folder with the
English voices when provisioned, else the packaged model), synthesises an ordinary two-sentence
text once to warm up, then three times measured: wall seconds, CPU-seconds, and the group's
throttled time (cpu.stat) per second of audio. Variants interleave (quota x threads x repeat).
Prints a markdown table, with the load average before and after (on a shared machine a quota
also measures the neighbours: compare the variants' ratios, not their absolute times).

    sudo .venv/bin/python scripts/bench_quota_threads.py --pools --quotas 0.1,0.5,1.0

--pools instead checks (--unsized: the control, pools left to their defaults), in each quota's group, what every thread pool of a worker starts with when
INFERENCE_THREADS=0: the threads chosen from the quota (backend/cpu_quota.py, set first as
gunicorn_config.py and backend.jobs.worker do), OpenBLAS under numpy (asked through its own
get_num_threads), torch's intra-op pool, and the threads an ONNX Runtime session adds to the process.
--cgroup-prefix names the groups made (and removed) under the cpu controller.
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
from backend.cpu_quota import limit_thread_pools
limit_thread_pools({threads})  # as the server does with INFERENCE_THREADS set, before numpy
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
POOLS_CHILD = r"""
import ctypes, json, os, sys, tempfile
sys.path.insert(0, {root!r})
from backend.cpu_quota import cpu_quota, inference_threads, limit_thread_pools
chosen = inference_threads(0)
if {threads}:  # --unsized: left out, as the jobs worker did before issue 26
    limit_thread_pools(chosen)  # what gunicorn_config.py and backend.jobs.worker do before any pool starts
row = {{"quota": cpu_quota().describe(), "chosen": chosen, "host_cores": os.cpu_count()}}
import numpy as np
blas = sorted({{line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line.lower()}})
lib = ctypes.CDLL(blas[0]) if blas else None
for name in ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_"):
    if lib is not None and hasattr(lib, name):
        row["openblas"] = getattr(lib, name)()
try:
    import torch
    row["torch_intra_op"] = torch.get_num_threads()
except ImportError:
    row["torch_intra_op"] = None
import onnx
from onnx import TensorProto, helper
from config import build_settings
from backend.pipelines.onnx_session import make_session
graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "g",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, [256, 256]) for n in "ab"],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [256, 256])])
path = os.path.join(tempfile.mkdtemp(), "matmul.onnx")
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
tasks = lambda: len(os.listdir("/proc/self/task"))
before = tasks()
session = make_session(path, build_settings(inference_threads=0, prometheus_multiproc_dir=None))
session.run(None, {{"a": np.ones((256, 256), np.float32), "b": np.ones((256, 256), np.float32)}})
row["onnxruntime_added_threads"] = tasks() - before
print(json.dumps(row))
"""
PREFIX = "bench-quota"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def group(quota: float) -> Path:
    v1 = Path("/sys/fs/cgroup/cpu")
    if v1.is_dir() and (v1 / "cpu.cfs_quota_us").exists():
        path = v1 / f"{PREFIX}-{os.getpid()}"
        path.mkdir(exist_ok=True)
        (path / "cpu.cfs_period_us").write_text("100000")
        (path / "cpu.cfs_quota_us").write_text(str(int(quota * 100000)))
        return path
    path = Path("/sys/fs/cgroup") / f"{PREFIX}-{os.getpid()}"
    path.mkdir(exist_ok=True)
    (path / "cpu.max").write_text(f"{int(quota * 100000)} 100000")
    return path


def throttled_s(path: Path) -> float:
    stat = dict(line.split() for line in (path / "cpu.stat").read_text().splitlines())
    if "throttled_time" in stat:
        return int(stat["throttled_time"]) / 1e9
    return int(stat.get("throttled_usec", 0)) / 1e6


def run(quota: float, threads: int, child: str = CHILD) -> dict:
    path = group(quota)
    try:
        code = child.format(root=str(ROOT), threads=threads, text=TEXT)
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
    parser.add_argument("--pools", action="store_true", help="check the pools' sizes in each quota instead")
    parser.add_argument("--unsized", action="store_true", help="with --pools: without limit_thread_pools (the control)")
    parser.add_argument("--cgroup-prefix", default=PREFIX)
    args = parser.parse_args()
    globals()["PREFIX"] = args.cgroup_prefix
    quotas = [float(q) for q in args.quotas.split(",")]
    counts = [int(t) for t in args.threads.split(",")]
    print(f"load average before: {load_average()}", flush=True)
    if args.pools:
        print("| quota (CPU) | host cores | quota found | threads chosen | OpenBLAS | torch intra-op | ONNX Runtime session adds |")
        print("|---|---|---|---|---|---|---|")
        for q in quotas:
            r = run(q, 0 if args.unsized else 1, POOLS_CHILD)
            print(f"| {q} | {r['host_cores']} | {r['quota']['quota_cpus']} | {r['chosen']} | {r.get('openblas')} | "
                  f"{r['torch_intra_op']} | {r['onnxruntime_added_threads']} |")
        print(f"load average after: {load_average()}")
        return
    results: dict[tuple[float, int], list[dict]] = {(q, t): [] for q in quotas for t in counts}
    for _ in range(args.repeat):
        for q in quotas:
            for t in counts:
                results[(q, t)].append(run(q, t))
                print(json.dumps({"quota": q, "threads": t, **results[(q, t)][-1]}), flush=True)
    print("| quota (CPU) | threads | wall s (3 syntheses) | CPU-s | CPU-s per audio s | throttled s | wall vs 1 thread "
          "| CPU-s vs 1 thread |")
    print("|---|---|---|---|---|---|---|---|")
    for q in quotas:
        base = statistics.median(r["wall_s"] for r in results[(q, counts[0])])
        base_cpu = statistics.median(r["cpu_s"] for r in results[(q, counts[0])])
        for t in counts:
            rows = results[(q, t)]
            wall = statistics.median(r["wall_s"] for r in rows)
            cpu = statistics.median(r["cpu_s"] for r in rows)
            per_audio = statistics.median(r["cpu_s"] / r["audio_s"] for r in rows)
            print(f"| {q} | {t} | {wall:.1f} | {cpu:.1f} | {per_audio:.2f} | "
                  f"{statistics.median(r['throttled_s'] for r in rows):.1f} | {wall / base:.2f} | {cpu / base_cpu:.2f} |")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
