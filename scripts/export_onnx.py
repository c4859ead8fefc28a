"""Export the speech models from torch to ONNX (int8 where parity allows) into the folder the server loads.

    python scripts/export_onnx.py --out models/onnx --models tts,language,ai_voice

Writes OUT/kokoro/, OUT/whisper/, OUT/ast/ (each with meta.json), prints the parity table
(torch vs ONNX on the same inputs) and exits 1 when any shipped model is out of tolerance.
Needs the full install (torch, transformers, kokoro, onnx); the server then needs neither.
scripts/fetch_models.py is the one command that also downloads the checkpoints and verifies them;
this one exports checkpoints already at hand.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from config import MODEL_NAMES, load_settings
from scripts.export import FOLDERS, exporter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    settings = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=settings.onnx_root, help="output folder (default: ONNX_DIR or MODEL_DIR/onnx)")
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma list of tts, language, ai_voice")
    parser.add_argument("--kokoro", default=str(settings.kokoro_model_dir or settings.kokoro_repo_id),
                        help="Kokoro folder or hub repo (default: KOKORO_MODEL_DIR, else KOKORO_REPO_ID)")
    parser.add_argument("--whisper", default=settings.whisper_model, help="Whisper folder or hub id (default: WHISPER_MODEL)")
    parser.add_argument("--ast", default=settings.ai_voice_model, help="AST folder or hub id (default: AI_VOICE_MODEL)")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="ship fp32 only")
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.models if name not in MODEL_NAMES]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; accepted: {', '.join(MODEL_NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from scripts.export.common import parity_failures, table

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sources = {"tts": args.kokoro, "language": args.whisper, "ai_voice": args.ast}
    rows = []
    for name in args.models:
        print(f"exporting {name} from {sources[name]} -> {args.out / FOLDERS[name]}", flush=True)
        rows += exporter(name)(sources[name], args.out / FOLDERS[name], int8=args.int8)
    print(table(rows))
    failed = parity_failures(rows)
    if failed:
        print(f"PARITY FAILED for {', '.join(sorted({row.model for row in failed}))}: out of tolerance", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
