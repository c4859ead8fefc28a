"""Voice-analysis memory and speed on torch: real-shape whisper-tiny and AST (random weights), fp32 vs int8 vs bf16.

    .venv/bin/python scripts/bench_analysis.py                       # everything, lengths 5 10 30 120 s
    .venv/bin/python scripts/bench_analysis.py --lengths 5 30 --models whisper

Each variant runs in a fresh process (`_child`) that imports, builds the real pipeline class
(WhisperTorchPipeline / ASTTorchPipeline) from a real-shape checkpoint written by
scripts/checkpoints, and runs each audio length once after one warm-up. "whisper-stock" is the
untrimmed model (full 51865-row proj_out tied to the input embedding) run the transformers way,
to measure what trimming the output projection to the language rows buys, with and without int8.
Memory comes from backend.memory.readings; peak is VmHWM reset after imports. Prints one
markdown table with ratios against fp32 of the same model.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LENGTHS_S = (5, 10, 30, 120)
VARIANTS = {
    "whisper": ("fp32", "int8", "bf16"),
    "whisper-stock": ("fp32", "int8"),
    "ast": ("fp32", "int8", "bf16"),
}


def voice(seconds: float) -> "np.ndarray":  # noqa: F821 - numpy is imported in the child only
    """Voice-like test signal: harmonics of a gliding 140 Hz pitch, syllable-rate envelope, breath noise."""
    import numpy as np

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 0.7 * t)) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (0.2 * voiced * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def child(model: str, variant: str, folder: str, lengths: list[float], threads: int) -> dict:
    """One measurement in this (fresh) process; returns plain numbers."""
    from backend.memory import readings

    started_rss = readings.rss_mb()
    import torch  # noqa: F401 - imports are part of what a worker pays
    import transformers  # noqa: F401

    if threads:
        torch.set_num_threads(threads)
    # The model class import (torch._dynamo, sympy: ~130 MB) is paid once per worker whatever the
    # variant: count it in "RSS after imports" so "RSS loaded" minus that is the model's own cost.
    if model.startswith("whisper"):
        from transformers import WhisperForConditionalGeneration  # noqa: F401
    else:
        from transformers import ASTForAudioClassification  # noqa: F401
    from config import build_settings

    settings = build_settings(whisper_model=folder, ai_voice_model=folder,
                              use_int8_quantization=variant == "int8",
                              model_dtype="bfloat16" if variant == "bf16" else "float32")
    readings.release_memory()
    import_rss = readings.rss_mb()
    readings.reset_peak_rss()
    t0 = time.perf_counter()
    if model == "whisper-stock":
        run = _stock_whisper(folder, variant == "int8")
    else:
        if model == "whisper":
            from backend.pipelines.language.whisper_torch import WhisperTorchPipeline as Cls
        else:
            from backend.pipelines.ai_voice.ast_torch import ASTTorchPipeline as Cls
        pipe = Cls(settings)
        pipe.load()
        options = {"top_k": 3} if model == "whisper" else {}

        def run(audio):
            return pipe({"audio": audio, **options})
    load_s = time.perf_counter() - t0
    load_peak = readings.peak_rss_mb()
    readings.release_memory()
    loaded_rss = readings.rss_mb()

    run(voice(5.0))  # warm-up: first-call allocations and kernel selection are not latency
    latency, windows = {}, {}
    readings.reset_peak_rss()
    for seconds in lengths:
        t0 = time.perf_counter()
        result = run(voice(seconds))
        latency[f"{seconds:g}"] = time.perf_counter() - t0
        windows[f"{seconds:g}"] = result.get("windows") if isinstance(result, dict) else None
    run_peak = readings.peak_rss_mb()
    readings.release_memory()
    return {"model": model, "variant": variant, "start_rss": started_rss, "import_rss": import_rss,
            "load_s": load_s, "load_peak": load_peak, "loaded_rss": loaded_rss, "steady_rss": readings.rss_mb(),
            "run_peak": run_peak, "latency_s": latency, "windows": windows, "threads": torch.get_num_threads()}


def _stock_whisper(folder: str, int8: bool):
    """The untrimmed model: full proj_out, language step the transformers way (no pipeline)."""
    import numpy as np
    import torch
    from transformers import GenerationConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    if int8:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    generation = GenerationConfig.from_pretrained(folder)
    ids = sorted(generation.lang_to_id.values())
    start = torch.tensor([[generation.decoder_start_token_id]])
    extractor = WhisperFeatureExtractor.from_pretrained(folder)

    def run(audio):
        probabilities = []
        for offset in range(0, max(1, audio.size), 30 * 16000):
            features = extractor(audio[offset:offset + 30 * 16000], sampling_rate=16000, return_tensors="pt")
            with torch.inference_mode():
                logits = model(input_features=features.input_features, decoder_input_ids=start).logits[0, -1, ids]
            probabilities.append(torch.softmax(logits, -1).numpy())
        return {"windows": len(probabilities), "probability": float(np.mean(probabilities, axis=0).max())}
    return run


def build_checkpoints(folder: Path) -> dict[str, Path]:
    from scripts.checkpoints.ast import build_ast_checkpoint
    from scripts.checkpoints.whisper import build_whisper_checkpoint

    paths = {"whisper": folder / "whisper-tiny-real-shape", "ast": folder / "ast-real-shape"}
    if not (paths["whisper"] / "model.safetensors").is_file():
        build_whisper_checkpoint(paths["whisper"], shape="real")
    if not (paths["ast"] / "model.safetensors").is_file():
        build_ast_checkpoint(paths["ast"], shape="real")
    paths["whisper-stock"] = paths["whisper"]
    return paths


def table(rows: list[dict], lengths: list[float]) -> str:
    head = ("| model | variant | load s | RSS after imports | RSS loaded | peak during load | steady RSS after runs "
            "| peak during runs | " + " | ".join(f"{s:g} s latency (windows)" for s in lengths)
            + " | steady vs fp32 | latency vs fp32 (longest) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    fp32 = {r["model"]: r for r in rows if r["variant"] == "fp32"}
    longest = f"{lengths[-1]:g}"
    for r in rows:
        base = fp32.get(r["model"])
        ratio_mem = f"{r['steady_rss'] / base['steady_rss']:.2f}x" if base else "-"
        ratio_lat = f"{r['latency_s'][longest] / base['latency_s'][longest]:.2f}x" if base else "-"
        cells = " | ".join(f"{r['latency_s'][f'{s:g}']:.2f} ({r['windows'][f'{s:g}']})" for s in lengths)
        lines.append(f"| {r['model']} | {r['variant']} | {r['load_s']:.2f} | {r['import_rss']:.0f} | {r['loaded_rss']:.0f} "
                     f"| {r['load_peak']:.0f} | {r['steady_rss']:.0f} | {r['run_peak']:.0f} | {cells} | {ratio_mem} | {ratio_lat} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("_child", help="internal: one measurement")
    one.add_argument("model")
    one.add_argument("variant")
    one.add_argument("folder")
    one.add_argument("--lengths", type=float, nargs="+", default=list(LENGTHS_S))
    one.add_argument("--threads", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--variants", nargs="+", default=["fp32", "int8", "bf16"])
    parser.add_argument("--lengths", type=float, nargs="+", default=list(LENGTHS_S), help="audio lengths, seconds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per child; 0 = torch's default")
    parser.add_argument("--checkpoints", type=Path, default=Path(tempfile.gettempdir()) / "bench_analysis_checkpoints",
                        help="folder for the real-shape random checkpoints (built once, reused)")
    args = parser.parse_args(argv)
    if args.command == "_child":
        print(json.dumps(child(args.model, args.variant, args.folder, args.lengths, args.threads)))
        return 0

    paths = build_checkpoints(args.checkpoints)
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
          f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    rows = []
    for model in args.models:
        for variant in VARIANTS[model]:
            if variant not in args.variants:
                continue
            command = [sys.executable, __file__, "_child", model, variant, str(paths[model]), "--threads",
                       str(args.threads), "--lengths", *map(str, args.lengths)]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                print(f"{model} {variant} failed ({done.returncode}):\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {model} {variant}: done", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(table(rows, args.lengths))
    print(f"\nload average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; RSS in MB (MiB); latency in s, one run each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
