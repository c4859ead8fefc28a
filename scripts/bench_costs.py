"""What models cost: the catalog's figures (import costs, estimates) against what the registry measures.

    .venv/bin/python scripts/bench_costs.py imports        # RSS each runtime module adds to a booted worker
    .venv/bin/python scripts/bench_costs.py models         # estimate before the first build vs measured, per model

`imports`: a fresh interpreter per pipeline class (and G2P setting) builds the app as a worker
does, then imports that pipeline's runtime modules in their order and reports the RSS each added;
the largest figure per module is what backend.catalog.IMPORT_COSTS_MB holds (a module's shared
parts count where they are first imported: misaki.en brings spaCy and, through it, torch).

`models`: a fresh interpreter per model builds the app on the model's backend, reads the
registry's expected cost (estimate from files: weights + allowance + imports), then serves a long
and a short request through the HTTP routes (as a client would) and reports what the registry
measured (import, load, peak during load, first use, request peak) and the cost it would now
admit with. TTS is the real Kokoro-82M int8 ONNX (the packaged one, or ONNX_DIR's export);
language and AI-voice use real-shape random whisper-tiny and AST exports (--work, built once
with scripts/bench_onnx.py's real_shape_exports: same sizes as the published checkpoints).
Only the ONNX backend is measured by default (--backends onnx,torch adds torch where its
weights are on disk).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = {  # family -> (long, short) request for the test client
    "tts": ("/v1/audio/speech", "long"), "language": ("/api/detect-language", 30.0), "ai_voice": ("/api/detect-ai-voice", 10.24),
}


def child_imports(modules: list[str]) -> dict:
    import importlib

    from backend import create_app
    from backend.memory import readings
    from config import build_settings

    create_app(build_settings(prometheus_multiproc_dir=None))  # what a booted worker has imported
    readings.release_memory()
    costs = {"boot_rss_mb": round(readings.rss_mb(), 1)}
    for module in modules:
        before = readings.rss_mb()
        if module == "kokoro.model":
            from backend.pipelines.tts.kokoro_torch import import_kmodel
            import_kmodel()
        else:
            importlib.import_module(module)
        costs[module] = round(readings.rss_mb() - before, 1)
    return costs


def _wav(seconds: float) -> bytes:
    import soundfile as sf

    from scripts.budget.workload import voiced_signal

    buffer = io.BytesIO()
    sf.write(buffer, voiced_signal(seconds), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def child_model(name: str, backend: str, env: dict[str, str]) -> dict:
    from backend import create_app
    from backend.registry import get_registry
    from config import build_settings
    from scripts.budget.workload import LONG_TEXT, SHORT_TEXT

    os.environ.update({k: v for k, v in env.items() if k.startswith("HF_")})  # huggingface_hub reads its own
    settings = build_settings(**{k.lower(): v for k, v in env.items() if not k.startswith("HF_")}, backend=backend,
                              prometheus_multiproc_dir=None, state_dir=tempfile.mkdtemp(prefix="bench-costs-"),
                              memory_budget_mb=65536, model_ttl_s=-1)
    app = create_app(settings)
    registry = get_registry(app)
    client = app.test_client()
    before = next(r for r in registry.snapshot() if r["name"] == name)
    if not before["servable"]:
        return {"name": name, "backend": backend, "skipped": before["reason"]}
    path, long = REQUESTS[name]
    statuses = []
    for size in ("long", "short"):
        if name == "tts":
            body = {"model": "tts-1", "input": LONG_TEXT if size == "long" else SHORT_TEXT, "response_format": "mp3"}
            response = client.post(path, json=body)
        else:
            seconds = long if size == "long" else 3.0
            response = client.post(path, data=_wav(seconds), content_type="audio/wav")
        response.get_data()
        response.close()
        statuses.append(response.status_code)
    after = next(r for r in registry.snapshot() if r["name"] == name)
    return {"name": name, "backend": backend, "statuses": statuses, "source": before["source"],
            "estimate": before["cost"]["estimate"], "imports_mb": after["imports_mb"],
            "measured_mb": after["measured_mb"], "peak_load_mb": after["peak_load_mb"],
            "first_use_mb": after["first_use_mb"], "request_peak_mb": after["request_peak_mb"],
            "cost_model_mb": after["cost"]["model_mb"]}


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "_child", *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=3600)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def runtime_sets() -> list[tuple[str, tuple[str, ...]]]:
    """(label, modules) for every pipeline class's runtime, under both G2P settings for TTS."""
    from backend.catalog import FAMILIES, pipeline_class
    from config import build_settings

    sets = []
    for g2p in ("espeak", "misaki"):
        settings = build_settings(kokoro_g2p=g2p, prometheus_multiproc_dir=None)
        for family in FAMILIES:
            if g2p == "misaki" and family.name != "tts":
                continue
            for backend in family.classes:
                modules = pipeline_class(family.name, backend).runtime_modules(settings)
                sets.append((f"{family.name}/{backend}" + (" KOKORO_G2P=misaki" if g2p == "misaki" else ""), modules))
    return sets


def bench_imports() -> None:
    largest: dict[str, float] = {}
    print("| pipeline | module (in import order) | RSS added, MB | worker RSS before, MB |\n|---|---|---|---|")
    for label, modules in runtime_sets():
        result = run_child("imports", json.dumps(list(modules)))
        for module in modules:
            largest[module] = max(largest.get(module, 0.0), result[module])
            print(f"| {label} | `{module}` | {result[module]} | {result['boot_rss_mb']} |", flush=True)
    print("\nIMPORT_COSTS_MB (largest per module):", json.dumps(largest))


def bench_models(work: Path, backends: list[str], threads: int) -> None:
    from scripts.bench_onnx import real_shape_exports

    exports = real_shape_exports(work)
    onnx_dir = exports["whisper"].parent.parent
    # The torch rows load the real-shape checkpoints the exports came from; Kokoro on torch needs
    # KOKORO_MODEL_DIR in this environment (scripts/checkpoints/kokoro.py builds a real-shape one).
    env = {"ONNX_DIR": str(onnx_dir), "INFERENCE_THREADS": str(threads),
           "WHISPER_MODEL": str(work / "whisper"), "AI_VOICE_MODEL": str(work / "ast"), "HF_HUB_OFFLINE": "1",
           **({"KOKORO_MODEL_DIR": os.environ["KOKORO_MODEL_DIR"]} if "KOKORO_MODEL_DIR" in os.environ else {})}
    print("| model | backend | estimate: weights + allowance + imports = total | measured: imports | load | peak in "
          "load | first use | request peak | cost now (model) | estimate / measured (imports included) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for backend in backends:
        for name in REQUESTS:
            row = run_child("model", name, backend, json.dumps(env))
            if "skipped" in row:
                print(f"| {name} | {backend} | skipped: {row['skipped']} |||||||||", flush=True)
                continue
            e = row["estimate"]
            measured_total = row["cost_model_mb"] + row["imports_mb"]
            print(f"| {name} | {backend} | {e['weights_mb']:.0f} + {e['allowance_mb']:.0f} + {e['imports_mb']:.0f} = "
                  f"{e['total_mb']:.0f} | {row['imports_mb']:.0f} | {row['measured_mb']:.0f} | {row['peak_load_mb']:.0f} "
                  f"| {row['first_use_mb']:.0f} | {row['request_peak_mb'] or 0:.0f} | {row['cost_model_mb']:.0f} "
                  f"| {e['total_mb'] / measured_total:.2f} |", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["_child"]:
        kind, *args = sys.argv[2:]
        result = child_imports(json.loads(args[0])) if kind == "imports" else \
            child_model(args[0], args[1], json.loads(args[2]))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("imports", "models"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-costs"), help="real-shape exports (built once)")
    parser.add_argument("--backends", default="onnx", help="comma list of onnx, torch (default: onnx)")
    parser.add_argument("--threads", type=int, default=0, help="INFERENCE_THREADS (default: 0, the library's)")
    args = parser.parse_args()
    if args.command == "imports":
        bench_imports()
    else:
        bench_models(args.work, [b.strip() for b in args.backends.split(",") if b.strip()], args.threads)


if __name__ == "__main__":
    main()
