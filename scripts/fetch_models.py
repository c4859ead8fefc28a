"""Provision the models the server loads, in one command: download, export to ONNX with parity, verify.

    .venv/bin/python scripts/fetch_models.py                          # every model (make models)
    .venv/bin/python scripts/fetch_models.py --models language,ai_voice
    .venv/bin/python scripts/fetch_models.py --check                  # what is missing; nothing fetched
    .venv/bin/python scripts/fetch_models.py --from language=/path/to/whisper-checkpoint

One step per model, the enabled ones by default (scripts/fetch/steps.py): tts is Kokoro-82M (KOKORO_REPO_ID) with its English
voices, language is WHISPER_MODEL, ai_voice is AI_VOICE_MODEL. Each comes from the first source
that can provide it here: a folder given with --from, a folder named by the setting, or the
Hugging Face hub (progress bars; every file checked against the hub's checksums; the hub is
probed for at most 2 s first). It is exported to ONNX (int8 where parity holds, Kokoro's voices
converted to voices.npz) into ONNX_DIR (MODEL_DIR/onnx unless set) with a manifest of sha256
checksums; a model whose manifest still matches is left alone, so a second run does nothing.
Offline, each missing model is one line saying so. The conversion needs the full install
(./scripts/setup.sh full); the server then needs only the lean one.

Exit code: 0 every model asked for is in place, 1 one is missing or failed, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from config import MODEL_NAMES, ConfigError, build_settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--models", default=None,
                        help="comma list of tts, language, ai_voice (default: the enabled ones, ENABLED_MODELS)")
    parser.add_argument("--from", dest="local", action="append", default=[], metavar="MODEL=FOLDER",
                        help="take MODEL's checkpoint from a local folder (before any other source)")
    parser.add_argument("--check", action="store_true", help="only say what is in place and what is missing")
    parser.add_argument("--force", action="store_true", help="fetch and export again even when in place")
    parser.add_argument("--verbose", action="store_true", help="log the conversion, tracebacks included")
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()] if args.models is not None else None
    unknown = [name for name in args.models or [] if name not in MODEL_NAMES]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; accepted: {', '.join(MODEL_NAMES)}")
    local = {}
    for item in args.local:
        model, sep, folder = item.partition("=")
        if not sep or model not in MODEL_NAMES or not folder:
            parser.error(f"--from takes MODEL=FOLDER with MODEL one of {', '.join(MODEL_NAMES)}, got {item!r}")
        local[model] = Path(folder)
    args.local = local
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = build_settings()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    from scripts.fetch.steps import model_steps

    steps = model_steps(settings, args.local)
    # animation has no step: its checkpoints come from the SadTalker release (README "Animation")
    models = args.models if args.models is not None else [name for name in MODEL_NAMES
                                                          if settings.model_enabled(name) and name in steps]
    for name in [name for name in models if name not in steps]:
        print(f"{name}: not provisioned by this script; see README \"Animation\"", flush=True)
    outcomes = [steps[name].run(settings.onnx_root, check_only=args.check, force=args.force)
                for name in models if name in steps]
    for outcome in outcomes:
        print(outcome.line, flush=True)
    return 0 if all(outcome.ok for outcome in outcomes) and all(name in steps for name in models) else 1


if __name__ == "__main__":
    raise SystemExit(main())
