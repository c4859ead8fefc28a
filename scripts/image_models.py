"""Provision the models an image serves, in the Dockerfile's export stage, and gather what the lean server reads.

    python -m scripts.image_models --out /app/serve-models                      # every model, warn on a missing one
    python -m scripts.image_models --models tts,language --strict 1 --out DIR    # fail when one is missing

Each model is provisioned by scripts/fetch_models.py on its own, so one whose weights cannot be
had here (a hub that does not answer) leaves the others in place: it is named in a warning, the
built server's /ready names it with its fix, and the build goes on. With --strict 1 the same
missing model fails the build (exit 1), for operators who want every model or no image.

Then OUT receives only what the lean server reads (MODEL_DIR of the lean image): each ONNX export
folder, or the packaged Kokoro model assembled once, each model file replaced by its optimised
graph (Kokoro's with its token durations as a second output), so the server neither assembles,
writes a timed copy nor optimises from scratch at start (gather()).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from config import build_settings

PROVISIONED = ("tts", "language", "ai_voice")
IMAGE_FACTS = "image-models.json"  # what OUT holds, for the lean stage  # animation's checkpoints are mounted (README "Animation")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma list of tts, language, ai_voice; empty = all three")
    parser.add_argument("--strict", default="0", choices=("0", "1"), help="1 = a model that cannot be had fails (exit 1)")
    parser.add_argument("--out", type=Path, required=True, help="folder to gather what the lean server reads into")
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()] or list(PROVISIONED)
    unknown = [name for name in args.models if name not in PROVISIONED]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; accepted: {', '.join(PROVISIONED)}")
    return args


def provision(models: list[str]) -> list[str]:
    """Run scripts/fetch_models.py once per model; the models that are not in place afterwards.

    tts first gets the 54 Kokoro voices (`python -m backend.provision voices`: the npm package
    kokoro-js, NPM_REGISTRY or npm's own config), which make its export folder; fetch_models then
    finds it in place.
    """
    from backend.provision.__main__ import main as provision_main
    from scripts import fetch_models

    if "tts" in models:
        provision_main(["voices"])
    return [name for name in models if fetch_models.main(["--models", name]) != 0]


def optimise_in_place(model: Path, settings) -> None:
    """Replace a model file by its optimised graph (ONNX Runtime's portable level, as onnx_session saves it).

    In an image the ONNX Runtime that loads the model is the one that optimised it (pinned in
    requirements-lean.txt), so one file does for both: the server loads it with the layout transforms
    for its own CPU on top, at the saved graph's cost (docs/BENCHMARKS.md "Start-up cost"), and the
    image holds one copy of the weights instead of two (88 MB for Kokoro, 47 for whisper-base).
    The audio is the same, sample for sample.
    """
    from backend.pipelines.onnx_session import save_optimized_graph

    saved = save_optimized_graph(model, settings)
    saved.replace(model)
    saved.with_suffix(".json").unlink(missing_ok=True)


def gather(out: Path) -> list[Path]:
    """Copy what the lean server reads into OUT, one optimised file per model; the model files.

    ONNX_DIR's export folders (not their conversion leftovers), else the packaged Kokoro model
    assembled once (the server would otherwise write 92 MB and hash it at its first TTS request).
    Kokoro's file is its timed graph (token durations as a second output: captions), which the
    server then loads as it is instead of writing a copy at its first load (timed_graph.py).
    """
    from backend.pipelines.tts.kokoro_onnx import assemble_packaged_model, export_folder, packaged_data
    from backend.pipelines.tts.timed_graph import duration_output, write_timed

    settings = build_settings()
    out.mkdir(parents=True, exist_ok=True)
    models: list[Path] = []
    if settings.onnx_root.is_dir():
        shutil.copytree(settings.onnx_root, out / "onnx", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.opt.onnx", "*.opt.json", "*.timed.onnx", "*.tmp"))
        models += sorted((out / "onnx").glob("*/model*.onnx"))
    if export_folder(settings) is None and packaged_data() is not None:
        models.append(assemble_packaged_model(out / "kokoro-packaged"))
    for path in models:
        tensor, present = duration_output(path) if path.parent.name.startswith("kokoro") else (None, False)
        if tensor is not None and not present:
            write_timed(path, path, tensor)
        optimise_in_place(path, settings)
        print(f"{path.relative_to(out)}: optimised{' timed' if tensor else ''} graph, "
              f"{path.stat().st_size / 2**20:.0f} MiB", flush=True)
    # The lean stage reads this: with the Kokoro export in place, the packaged model's wheels
    # (92 MB) are left out of its virtualenv.
    facts = {"kokoro_export": export_folder(settings) is not None, "models": [str(p.relative_to(out)) for p in models]}
    (out / IMAGE_FACTS).write_text(json.dumps(facts, indent=1), encoding="utf-8")
    return models


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = provision(args.models)
    for name in missing:
        print(f"WARNING: model {name} is not in this image (see the line above); /ready names it. Rebuild where it "
              f"can be fetched, or mount a provisioned models folder at MODEL_DIR. --build-arg STRICT_MODELS=1 "
              f"makes this an error.", file=sys.stderr, flush=True)
    if missing and args.strict == "1":
        print(f"STRICT_MODELS=1: failing the build, {len(missing)} model(s) missing: {', '.join(missing)}",
              file=sys.stderr, flush=True)
        return 1
    gather(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
