"""Start-up cost: each model's build in CPU-seconds, with and without its saved optimised graph.

    .venv/bin/python scripts/bench_startup.py                     # the packaged Kokoro + every export in ONNX_DIR
    .venv/bin/python scripts/bench_startup.py --repeat 3 --threads 1

For each ONNX model (the assembled packaged Kokoro int8, and each ONNX_DIR/<family>/model*.onnx),
one fresh process per variant and repeat, its CPU time (user + system, every thread) measured
around the session build only:
- `original`: the model file optimised at load (ORT_ENABLE_ALL), as every start did before;
- `saved`: its saved optimised graph (save_optimized_graph: extended level, at provisioning or
  image build) loaded with the layout level on top, as make_session now does;
- `save`: what saving costs once, at build time.
Then the whole TTS pipeline's load (G2P, session, voices, warm-up run) on both, and the audio of
one sentence from both sessions compared sample for sample. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from config import build_settings
from backend.pipelines import onnx_session
variant, model = {variant!r}, Path({model!r})
settings = build_settings(inference_threads={threads})
import onnxruntime, numpy  # imports are not the build
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
if variant == "save":
    start = cpu(); onnx_session.save_optimized_graph(model, settings); took = cpu() - start
elif variant in ("original", "saved"):
    if variant == "original":
        onnx_session.saved_graph = lambda path: None
    start = cpu(); onnx_session.make_session(model, settings); took = cpu() - start
else:  # tts-original / tts-saved: the whole pipeline's load, then one sentence
    if variant == "tts-original":
        onnx_session.saved_graph = lambda path: None
    from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline
    pipe = KokoroOnnxPipeline(settings)
    start = cpu(); pipe.load(); took = cpu() - start
    import numpy as np
    ids = [int(i) for i in range(16, 60)]
    audio = pipe._synthesize(ids, np.asarray(pipe._npz[pipe._npz.files[0]][len(ids)]), 1.0)
    np.save({out!r}, audio)
print(json.dumps({{"cpu_s": took}}))
"""


def run(variant: str, model: Path, threads: int, out: Path) -> float:
    code = CHILD.format(root=str(ROOT), variant=variant, model=str(model), threads=threads, out=str(out))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{variant} {model}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["cpu_s"]


def models(settings) -> list[Path]:
    from backend.pipelines.tts.kokoro_onnx import assemble_packaged_model, packaged_data

    found = sorted(p for p in settings.onnx_root.glob("*/model*.onnx") if not p.name.endswith(".opt.onnx"))
    if packaged_data() is not None:
        found.append(assemble_packaged_model(settings.model_dir / "kokoro-packaged"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from config import build_settings

    settings = build_settings()
    tmp = ROOT / "reports" / "startup"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in models(settings):
        save = run("save", model, args.threads, tmp / "unused.npy")
        original = [run("original", model, args.threads, tmp / "unused.npy") for _ in range(args.repeat)]
        saved = [run("saved", model, args.threads, tmp / "unused.npy") for _ in range(args.repeat)]
        rows.append((str(model.relative_to(settings.model_dir)), statistics.median(original), statistics.median(saved), save))
    print(f"threads={args.threads}, median of {args.repeat} fresh processes, CPU-s of the session build only\n")
    print("| model | optimised at load (before) | saved graph loaded (after) | saved / before | saving it once (build) |")
    print("|---|---|---|---|---|")
    for name, before, after, save in rows:
        print(f"| {name} | {before:.2f} | {after:.2f} | {after / before:.2f} | {save:.2f} |")
    import numpy as np

    tts = [(run("tts-original", Path(), args.threads, tmp / "original.npy"), run("tts-saved", Path(), args.threads, tmp / "saved.npy"))
           for _ in range(args.repeat)]
    a, b = np.load(tmp / "original.npy"), np.load(tmp / "saved.npy")
    print(f"\nTTS pipeline load (G2P, session, voices, warm-up run), CPU-s: before {statistics.median(t[0] for t in tts):.2f}, "
          f"after {statistics.median(t[1] for t in tts):.2f}; audio of one 44-token piece identical: "
          f"{a.shape == b.shape and bool(np.array_equal(a, b))} (max |diff| {float(np.max(np.abs(a - b))) if a.shape == b.shape else 'shape'})")


if __name__ == "__main__":
    main()
