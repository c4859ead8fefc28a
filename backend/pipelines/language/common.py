"""Spoken-language detection, independent of the backend: windows, softmax, averaging, top-k.

A backend (whisper_torch, whisper_onnx) subclasses LanguageDetector, sets `languages` (codes
in the order of its logits, from the checkpoint's generation_config lang_to_id: "<|en|>" ->
"en", sorted by token id) and `model_id` in load(), and implements two methods:

    features(window: float32 [<= 30 s at 16 kHz]) -> np.ndarray [n_mels, 3000]
    language_logits(features)                     -> np.ndarray [len(languages)]
        (the first decoder step after <|startoftranscript|>, language tokens only)

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
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.audio.decode import require_analysable
from backend.audio.features import SAMPLE_RATE_HZ
from backend.errors import BadRequest
from backend.pipelines.base import Pipeline
from config import Settings

logger = logging.getLogger(__name__)

WINDOW_S = 30  # Whisper's encoder sees exactly 30 s
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE_HZ
MAX_WINDOWS = 10  # longer audio: windows spread evenly over it (bounds latency; seconds_analysed says so)
DEFAULT_TOP_K = 5


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


def window_starts(n_samples: int, window: int, max_windows: int, hop: int | None = None) -> list[int]:
    """Start offsets of windows covering n_samples: back to back (or every hop), the last one
    flush with the end so no window is mostly padding; at most max_windows, spread evenly."""
    hop = hop or window
    if n_samples <= window:
        return [0]
    last = n_samples - window
    count = -(-last // hop) + 1  # ceil(last / hop) + 1
    if count > max_windows:
        return [round(x) for x in np.linspace(0, last, max_windows)]
    return [min(i * hop, last) for i in range(count)]


def covered_samples(starts: list[int], window: int, n_samples: int) -> int:
    """Samples inside at least one window (the union of [start, start+window))."""
    covered, reach = 0, 0
    for start in sorted(starts):
        end = min(start + window, n_samples)
        covered += max(0, end - max(start, reach))
        reach = max(reach, end)
    return covered


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


@dataclass
class LanguageRequest:
    """What run() needs: one feature matrix per window, and how to shape the answer."""

    features: list[np.ndarray]
    top_k: int
    allowed: list[str] | None
    seconds_analysed: float


@dataclass
class LanguageRaw:
    logits: np.ndarray  # [windows, n_languages]
    request: LanguageRequest


class LanguageDetector(Pipeline):
    """Whisper language identification over 30 s windows; subclasses provide features and logits."""

    name = "language"
    max_windows = MAX_WINDOWS

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_id: str = settings.whisper_model
        self.languages: list[str] = []

    @abstractmethod
    def features(self, window: np.ndarray) -> np.ndarray:
        """[n_mels, 3000] log-mel of up to 30 s of 16 kHz mono float32 audio."""

    @abstractmethod
    def language_logits(self, features: np.ndarray) -> np.ndarray:
        """[len(self.languages)] logits of the language tokens at the first decoder step."""

    # --- pipeline contract ---------------------------------------------------------------
    def preprocess(self, request: Mapping[str, Any]) -> LanguageRequest:
        audio = require_analysable(request.get("audio"))
        top_k = _top_k(request.get("top_k"), len(self.languages))
        allowed = self._allowed(request.get("allowed_languages"))
        if allowed is not None:
            top_k = min(top_k, len(allowed))
        starts = window_starts(audio.size, WINDOW_SAMPLES, self.max_windows)
        features = [self.features(audio[start:start + WINDOW_SAMPLES]) for start in starts]
        seconds = covered_samples(starts, WINDOW_SAMPLES, audio.size) / SAMPLE_RATE_HZ
        return LanguageRequest(features=features, top_k=top_k, allowed=allowed, seconds_analysed=seconds)

    def run(self, features: LanguageRequest) -> LanguageRaw:
        logits = np.stack([np.asarray(self.language_logits(f), dtype=np.float32).reshape(-1)
                           for f in features.features])
        return LanguageRaw(logits=logits, request=features)

    def postprocess(self, raw: LanguageRaw) -> dict[str, Any]:
        request = raw.request
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
        return {"backend": self.backend, "model": self.model_id, "languages": len(self.languages)}

    # --- helpers ----------------------------------------------------------------------------
    def _allowed(self, value: object) -> list[str] | None:
        if value is None or value == "" or value == []:
            return None
        if isinstance(value, str):
            value = [item for item in value.split(",")]
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise BadRequest("allowed_languages must be a list of language codes (or a comma-separated string)")
        allowed = list(dict.fromkeys(item.strip().lower().removeprefix("<|").removesuffix("|>")
                                     for item in value if item.strip()))
        unknown = [code for code in allowed if code not in self.languages]
        if unknown:
            raise BadRequest(f"unknown language code(s) {', '.join(unknown)}; the model knows: {', '.join(self.languages)}",
                             unknown=unknown)
        return allowed or None


def _top_k(value: object, n_languages: int) -> int:
    if value is None or value == "":
        return min(DEFAULT_TOP_K, n_languages)
    try:
        top_k = int(value)  # type: ignore[call-overload]
        if isinstance(value, float | bool) or str(top_k) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"top_k must be a whole number, got {value!r}") from exc
    if top_k < 1:
        raise BadRequest(f"top_k must be at least 1, got {top_k}")
    return min(top_k, n_languages)  # "all of them" is a fair request: asking for more lists every language
