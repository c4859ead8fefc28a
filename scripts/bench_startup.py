"""Start-up cost: the CPU-seconds from a process's start to its first English speech, by stage, per model layout.

    .venv/bin/python scripts/bench_startup.py --model-dir /path/to/an/image/models      # one layout
    .venv/bin/python scripts/bench_startup.py --model-dir A --model-dir B --repeat 3     # interleaved

Each run is one fresh Python process doing what a lean worker does from its start to its first
answer, through the app's own code (no Gunicorn, no HTTP socket): import and build the app
(backend.wsgi), build TTS through the registry exactly as the background warm-up does
(registry.load("tts"): the G2P, the timed graph, the ONNX session, the voices, the warm-up run), then
one English sentence through POST /v1/audio/speech (Flask's test client, voice alloy, wav). CPU time is
the process's user + system, every thread (getrusage), read between stages; "python" is the
interpreter's own start before the first line. Sub-stages of the build are timed by wrapping
the functions that do them. A MODEL_DIR that is written to (a timed copy made at first load)
is copied to a temporary folder first, so every repeat starts from the same files.

--gunicorn first does what Gunicorn's master does before it forks the worker (PRELOAD=false):
its imports and gunicorn_config.py (settings, thread pools, the metrics folder); the worker
inherits all of it, so the app stage after it is the worker's own part.
--env LABEL:KEY=VALUE gives that layout's child a setting (as the service's environment would).
--hide LABEL:MODULE makes MODULE look uninstalled in that layout's child (as in the lean image:
`segments`); --warm-up LABEL runs one warm-up synthesis at load in that layout's child, as load()
did before this issue's work.
A layout may be named twice under different labels (LABEL=PATH).
Layouts are run interleaved (A, B, A, B, ...) and medians reported; the load of a shared machine
moves wall time, not these CPU-seconds (much).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = "Hello, this is the first sentence a new user hears."  # bench_shapes.py's first English speech

CHILD = r"""
import resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
marks = [("python", cpu())]
hidden = {hide!r}
if hidden:  # as if not installed: the path finder does not find them
    from importlib.machinery import PathFinder
    _find = PathFinder.find_spec
    PathFinder.find_spec = classmethod(lambda cls, name, path=None, target=None:
                                       None if name.split(".")[0] in hidden else _find(name, path, target))
sys.path.insert(0, {root!r})
if {gunicorn!r}:  # what the Gunicorn master does before it forks the worker (PRELOAD=false)
    import runpy
    import gunicorn.app.wsgiapp, gunicorn.workers.gthread  # noqa: E401
    runpy.run_path({root!r} + "/gunicorn_config.py")
    marks.append(("Gunicorn master (its imports, gunicorn_config.py)", cpu()))
from backend.wsgi import app
marks.append(("app (imports, create_app)", cpu()))
from backend.pipelines import onnx_session
from backend.pipelines.tts import kokoro_onnx, g2p, pipeline
spent = {{}}
def timed(owner, name, label):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        start = cpu()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + cpu() - start
    setattr(owner, name, wrapper)
timed(g2p.Phonemizer, "prepare", "G2P")
timed(kokoro_onnx, "timed_model", "timed graph")
timed(kokoro_onnx, "make_session", "ONNX session")
timed(pipeline.KokoroPipeline, "warm_up", "warm-up run")
if {warm_up!r}:  # what load() did before: one short synthesis right after building the session
    _load = kokoro_onnx.KokoroOnnxPipeline.load
    def load_and_warm(self):
        _load(self)
        self.warm_up()
    kokoro_onnx.KokoroOnnxPipeline.load = load_and_warm
from backend.registry import get_registry
get_registry(app).load("tts")
marks.append(("TTS build", cpu()))
response = app.test_client().post("/v1/audio/speech", headers={{"x-api-key": "bench"}},
    json={{"model": "tts-1", "input": {sentence!r}, "voice": "alloy", "response_format": "wav"}})
body = response.get_data()
assert response.status_code == 200, body[:300]
marks.append(("first sentence", cpu()))
again = app.test_client().post("/v1/audio/speech", headers={{"x-api-key": "bench"}},
    json={{"model": "tts-1", "input": {sentence!r}, "voice": "alloy", "response_format": "wav"}}).get_data()
marks.append(("(the same sentence again: not in the total)", cpu()))
import json
print(json.dumps({{"marks": marks, "build": spent, "audio_s": (len(body) - 44) / 48000,
                  "voice": response.headers.get("X-Voice")}}))
"""


def run(model_dir: Path, hide: list[str], threads: int, warm_up: bool = False, gunicorn: bool = False,
        extra_env: dict[str, str] | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp) / "models"
        shutil.copytree(model_dir, work, symlinks=True)
        env = {"MODEL_DIR": str(work), "STATE_DIR": str(Path(tmp) / "state"), "INFERENCE_THREADS": str(threads),
               "API_KEYS": "bench", "WARM_MODELS": "", "LOG_LEVEL": "WARNING", "BACKEND": "onnx",
               "PATH": "/usr/bin:/bin", "HOME": tmp, **(extra_env or {})}
        code = CHILD.format(root=str(ROOT), hide=hide, sentence=SENTENCE, warm_up=warm_up, gunicorn=gunicorn)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{model_dir}: {result.stderr[-3000:]}")
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    stages, last = {}, 0.0
    for name, at in facts["marks"]:
        stages[name], last = at - last, at
    again = stages.pop("(the same sentence again: not in the total)")
    stages["total"] = facts["marks"][-2][1]
    stages["(the same sentence again, model loaded)"] = again
    return {"stages": stages, "build": facts["build"], "audio_s": facts["audio_s"], "voice": facts["voice"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, action="append", required=True,
                        help="a MODEL_DIR layout (repeat the option to compare; LABEL=PATH to name it)")
    parser.add_argument("--hide", action="append", default=[], help="LABEL:MODULE: that layout's child without MODULE")
    parser.add_argument("--warm-up", action="append", default=[], metavar="LABEL",
                        help="that layout's child runs the warm-up synthesis at load, as load() did before")
    parser.add_argument("--env", action="append", default=[], metavar="LABEL:KEY=VALUE",
                        help="a setting for that layout's child (e.g. one:TTS_FIRST_PIECE_TOKENS=0)")
    parser.add_argument("--gunicorn", action="store_true",
                        help="first what the Gunicorn master does before forking (its imports, gunicorn_config.py)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    layouts = []
    for item in args.model_dir:
        label, _, path = str(item).rpartition("=")
        layouts.append((label or Path(path).name, Path(path)))
    hides = {}
    for item in args.hide:
        label, _, module = item.partition(":")
        hides.setdefault(label, []).append(module)
    envs: dict[str, dict[str, str]] = {}
    for item in args.env:
        label, _, pair = item.partition(":")
        key, _, value = pair.partition("=")
        envs.setdefault(label, {})[key] = value
    runs: dict[str, list[dict]] = {label: [] for label, _ in layouts}
    for _ in range(args.repeat):
        for label, path in layouts:
            runs[label].append(run(path, hides.get(label, []), args.threads, label in args.warm_up, args.gunicorn,
                                   envs.get(label)))
            print(json.dumps({label: runs[label][-1]}), file=sys.stderr, flush=True)
    stage_names = list(runs[layouts[0][0]][0]["stages"])
    build_names = ["G2P", "timed graph", "ONNX session", "warm-up run"]
    print(f"\nCPU-s from process start, median of {args.repeat} fresh processes each, INFERENCE_THREADS={args.threads}; "
          f"first sentence: {SENTENCE!r}\n")
    print("| stage | " + " | ".join(label for label, _ in layouts) + " |")
    print("|---|" + "---|" * len(layouts))
    for name in stage_names:
        print(f"| {name} | " + " | ".join(f"{statistics.median(r['stages'][name] for r in runs[label]):.2f}"
                                        for label, _ in layouts) + " |")
        if name == "TTS build":
            for sub in build_names:
                print(f"| &nbsp; of which {sub} | " + " | ".join(
                    f"{statistics.median(r['build'].get(sub, 0.0) for r in runs[label]):.2f}" for label, _ in layouts) + " |")
    print("| audio of the sentence, s (voice) | " + " | ".join(
        f"{runs[label][0]['audio_s']:.2f} ({runs[label][0]['voice']})" for label, _ in layouts) + " |")


if __name__ == "__main__":
    main()
