"""Text -> Kokoro phonemes, offline: which languages this build speaks and the phonemiser.

English follows KOKORO_G2P (misaki's espeak G2P, or its dictionary G2P with spaCy); the other
languages use espeak-ng, shipped inside the espeakng-loader wheel. Nothing here imports torch,
and misaki is imported only when a G2P is built.
"""
from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from typing import Any

from backend.errors import BadRequest, ModelUnavailable
from backend.pipelines.base import Availability
from config import Settings

# Kokoro's language codes (the first letter of a voice name) -> espeak-ng language, name.
LANGUAGES: dict[str, tuple[str, str]] = {
    "a": ("en-us", "American English"), "b": ("en-gb", "British English"), "e": ("es", "Spanish"),
    "f": ("fr-fr", "French"), "h": ("hi", "Hindi"), "i": ("it", "Italian"), "p": ("pt-br", "Brazilian Portuguese"),
    "j": ("ja", "Japanese"), "z": ("cmn", "Mandarin Chinese"),
}
# Languages this build can phonemise (espeak-ng); Japanese and Chinese need misaki[ja] / misaki[zh].
SPOKEN_CODES = ("a", "b", "e", "f", "h", "i", "p")
_LANG_ALIASES = {"en": "a", "en-us": "a", "en_us": "a", "en-gb": "b", "en_gb": "b", "es": "e", "fr": "f",
                 "fr-fr": "f", "hi": "h", "it": "i", "pt": "p", "pt-br": "p", "ja": "j", "zh": "z", "cmn": "z"}


def language_code(lang: str) -> str:
    """Kokoro's one-letter code for 'a', 'en-us', 'en-gb', 'es', ...; 400 for languages this build cannot speak."""
    key = lang.strip().lower()
    code = key if key in LANGUAGES else _LANG_ALIASES.get(key)
    if code is None or code not in SPOKEN_CODES:
        known = ", ".join(f"{c} ({LANGUAGES[c][0]})" for c in SPOKEN_CODES)
        why = "needs misaki[ja] / misaki[zh], not installed" if code in ("j", "z") else "unknown"
        raise BadRequest(f"language {lang!r} is not available ({why}); use one of: {known}", field="lang")
    return code


def g2p_modules(settings: Settings) -> tuple[str, ...]:
    """What building the English G2P imports (misaki's dictionary G2P pulls spaCy, and torch with it)."""
    return ("misaki.en", "misaki.espeak") if settings.kokoro_g2p == "misaki" else ("misaki.espeak",)


def g2p_missing(settings: Settings) -> Availability | None:
    """Why the configured G2P cannot be built here, from installed packages alone; None when it can."""
    if importlib.util.find_spec("misaki") is None or importlib.util.find_spec("espeakng_loader") is None:
        return Availability.missing("the phonemiser (misaki, espeakng-loader) is not installed",
                                    "`./scripts/setup.sh lean` (installs requirements-lean.txt)")
    if settings.kokoro_g2p == "misaki" and importlib.util.find_spec("en_core_web_sm") is None:
        return Availability.missing(MISAKI_NEEDS_SPACY_MODEL, "set KOKORO_G2P=espeak")
    return None


MISAKI_NEEDS_SPACY_MODEL = (
    "KOKORO_G2P=misaki needs the spaCy English model en_core_web_sm, which is not installed; install it "
    "(pip install en_core_web_sm from a wheel you trust, e.g. https://github.com/explosion/spacy-models/releases) "
    "or set KOKORO_G2P=espeak")


class Phonemizer:
    """Text -> Kokoro phonemes, offline. English per KOKORO_G2P, other languages with espeak-ng."""

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.kokoro_g2p
        self._g2p: dict[str, Callable[[str], Any]] = {}
        self._lock = threading.Lock()  # espeak-ng keeps global state: one call at a time

    def prepare(self, code: str = "a") -> None:
        """Build the G2P for one language now (load time), so a missing dependency fails the load."""
        with self._lock:
            self._get(code)

    def _get(self, code: str) -> Callable[[str], Any]:
        if code not in self._g2p:
            self._g2p[code] = self._build(code)
        return self._g2p[code]

    def _build(self, code: str) -> Callable[[str], Any]:
        if code in ("a", "b") and self.mode == "misaki":
            if importlib.util.find_spec("en_core_web_sm") is None:
                # misaki would call spacy.cli.download here: a network fetch at request time.
                raise ModelUnavailable(MISAKI_NEEDS_SPACY_MODEL, model="tts")
            from misaki import en, espeak

            return en.G2P(trf=False, british=code == "b", fallback=espeak.EspeakFallback(british=code == "b"), unk="")
        from misaki.espeak import EspeakG2P

        return EspeakG2P(language=LANGUAGES[code][0])

    def __call__(self, text: str, code: str = "a") -> str:
        with self._lock:
            phonemes, _ = self._get(code)(text)
        return (phonemes or "").strip()
