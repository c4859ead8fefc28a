"""The figure behind keeping models in the worker (issue 24): one child process per model, forked from a
zygote that imported ONNX Runtime, against the same Kokoro session in-process.

    .venv/bin/python scripts/bench_model_process.py [--model models/onnx/kokoro/model.int8.onnx] [--repeats 3]

Each variant runs in a fresh interpreter, with the product's session options (backend.pipelines.
onnx_session.make_session: the quota's threads, the arena) and one 40-token Kokoro piece run once:

- in-process: the interpreter imports numpy and onnxruntime (what a worker holds before its first
  build), then builds the session and runs the piece. The model's cost is the PSS it added.
- zygote + child: the interpreter (the zygote) imports numpy and onnxruntime, then forks a child
  that builds the same session and runs the same piece. What the service holds for the model is the
  child's PSS (its own pages and its share of the zygote's); what unloading would give back
  exactly is the child's USS (private pages: they go when it exits). The zygote itself is one more
  interpreter the service keeps.

PSS and USS come from /proc/PID/smaps_rollup (Pss, Private_Clean + Private_Dirty). Prints one JSON
line per repeat and the medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "onnx" / "kokoro" / "model.int8.onnx"
PIECE_TOKENS = 40


def smaps(pid: int) -> dict[str, float]:
    """Pss and Uss (private) of `pid`, MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            fields[parts[0][:-1]] = int(parts[1]) / 1024
    return {"pss_mb": round(fields["Pss"], 1), "uss_mb": round(fields["Private_Clean"] + fields["Private_Dirty"], 1),
            "rss_mb": round(fields["Rss"], 1)}


def _import_runtime() -> None:
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401


def _load_and_run(model: Path):
    """The Kokoro session with the product's options, and one piece run through it; returns the session."""
    import numpy as np

    from backend.pipelines.onnx_session import make_session
    from config import build_settings

    session = make_session(model, build_settings(backend="onnx"))
    feeds = {"tokens": np.array([[0] + [50] * PIECE_TOKENS + [0]], dtype=np.int64),
             "style": np.zeros((1, 256), dtype=np.float32), "speed": np.ones(1, dtype=np.float32)}
    names = {i.name for i in session.get_inputs()}
    session.run(None, {k: v for k, v in feeds.items() if k in names})
    return session


def in_process(model: Path) -> dict[str, object]:
    _import_runtime()
    before = smaps(os.getpid())
    session = _load_and_run(model)
    after = smaps(os.getpid())
    del session
    return {"variant": "in-process", "before": before, "after": after,
            "model_pss_mb": round(after["pss_mb"] - before["pss_mb"], 1)}


def zygote(model: Path) -> dict[str, object]:
    _import_runtime()
    zygote_alone = smaps(os.getpid())
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:  # the model's process: build, run, say so, wait to be measured
        os.close(ready_r)
        os.close(done_w)
        session = _load_and_run(model)
        os.write(ready_w, b"1")
        os.read(done_r, 1)
        del session
        os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    os.read(ready_r, 1)
    child_figures, zygote_after = smaps(child), smaps(os.getpid())
    os.write(done_w, b"1")
    os.waitpid(child, 0)
    return {"variant": "zygote + child", "zygote_before_fork": zygote_alone, "zygote_with_child": zygote_after,
            "child": child_figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", choices=("in-process", "zygote"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps((in_process if args.variant == "in-process" else zygote)(args.model)), flush=True)
        return 0
    rows: dict[str, list[dict]] = {"in-process": [], "zygote": []}
    for _ in range(args.repeats):
        for variant in rows:  # interleaved, so load on the machine falls on both alike
            out = subprocess.run([sys.executable, __file__, "--variant", variant, "--model", str(args.model)],
                                 check=True, capture_output=True, text=True, cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
            row = json.loads(out.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows[variant].append(row)
    model_in_process = statistics.median(r["model_pss_mb"] for r in rows["in-process"])
    child_pss = statistics.median(r["child"]["pss_mb"] for r in rows["zygote"])
    child_uss = statistics.median(r["child"]["uss_mb"] for r in rows["zygote"])
    runtime_in_zygote = statistics.median(r["zygote_before_fork"]["pss_mb"] for r in rows["zygote"])
    print(json.dumps({"median_model_pss_in_process_mb": model_in_process, "median_child_pss_mb": child_pss,
                      "median_child_uss_mb": child_uss, "median_zygote_pss_before_fork_mb": runtime_in_zygote,
                      "child_pss_over_in_process_mb": round(child_pss - model_in_process, 1),
                      "load_average": round(os.getloadavg()[0], 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
