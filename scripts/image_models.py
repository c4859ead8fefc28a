"""Provision the models an image serves, in the Dockerfile's export stage, and gather what the lean server reads.

    python -m scripts.image_models --out /app/serve-models                      # every model, warn on a missing one
    python -m scripts.image_models --models tts,language --strict 1 --out DIR    # fail when one is missing

Each model is provisioned by scripts/fetch_models.py on its own, so one whose weights cannot be
had here (a hub that does not answer) leaves the others in place: it is named in a warning, the
built server's /ready names it with its fix, and the build goes on. With --strict 1 the same
missing model fails the build (exit 1), for operators who want every model or no image.

Then OUT receives only what the lean server reads (MODEL_DIR of the lean image): each ONNX export
folder, the packaged Kokoro model assembled once, and each model's saved optimised graph
(backend/pipelines/onnx_session.py), so the server neither assembles nor optimises at start.
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


def gather(out: Path) -> list[Path]:
    """Copy the ONNX exports and the assembled packaged Kokoro model into OUT; the model files copied."""
    from backend.pipelines.onnx_session import save_optimized_graph
    from backend.pipelines.tts.kokoro_onnx import assemble_packaged_model, export_folder, packaged_data
    from backend.pipelines.tts.timed_graph import timed_model

    settings = build_settings()
    out.mkdir(parents=True, exist_ok=True)
    models: list[Path] = []
    if settings.onnx_root.is_dir():
        shutil.copytree(settings.onnx_root, out / "onnx", dirs_exist_ok=True)
        models += sorted((out / "onnx").glob("*/model*.onnx"))
    if export_folder(settings) is None and packaged_data() is not None:
        # The server would otherwise write 92 MB and hash it at its first TTS request.
        models.append(assemble_packaged_model(out / "kokoro-packaged"))
    # Kokoro with its token durations as a second output (captions), beside it: what the server loads.
    for path in [p for p in models if p.parent.name.startswith("kokoro")]:
        timed, _ = timed_model(path, path.parent)
        if timed not in models:
            models.append(timed)
    for path in [p for p in models if not p.name.endswith(".opt.onnx")]:
        saved = save_optimized_graph(path, settings)
        print(f"saved the optimised graph of {path.relative_to(out)} as {saved.name}", flush=True)
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
