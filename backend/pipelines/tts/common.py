"""What both Kokoro backends share: request validation, voices, G2P, text splitting, the run loop.

One way to do each thing. The torch and ONNX pipelines differ only in how they load weights,
read a voice pack and turn (token ids, style, speed) into samples (`KokoroPipeline._synthesize`).
Nothing here imports torch, transformers or kokoro; G2P comes from misaki.espeak (espeak-ng
inside the espeakng-loader wheel) or, with KOKORO_G2P=misaki, misaki's dictionary G2P.
"""
from __future__ import annotations

import importlib.util
import logging
import re
import threading
import zipfile
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.audio.encode import check_format
from backend.errors import BadRequest, ModelUnavailable, VoiceNotFound
from backend.pipelines.base import Pipeline
from config import Settings

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 24000
MAX_TOKENS = 510  # Kokoro's context is 512 positions: 510 phonemes plus the two pad tokens
SPEED_MIN, SPEED_MAX = 0.25, 4.0
STYLE_WIDTH = 256
VOICE_CACHE_SIZE = 8  # voice packs are 510 x 256 float32 = 0.5 MB each
MAX_VOICE_PARTS = 8
VOICE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_VOICE_PART_RE = re.compile(r"^\s*([^()\s]+)\s*(?:\(\s*([0-9]*\.?[0-9]+)\s*\))?\s*$")

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
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+|\n+")
_CLAUSE_END = re.compile(r"(?<=[,;:—–、])\s+")


# --- requests ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeechRequest:
    """A validated synthesis request; voice None means the pipeline's default."""

    text: str
    voice: str | None
    speed: float
    format: str
    lang: str | None


def validate_request(settings: Settings, *, text: Any, voice: Any = None, speed: Any = 1.0,
                     fmt: Any = "mp3", lang: Any = None) -> SpeechRequest:
    """Everything about a request that can be checked without the model; raises 4xx ApiErrors."""
    if not isinstance(text, str):
        raise BadRequest("text must be a string", field="input")
    if not text.strip():
        raise BadRequest("text is empty or only whitespace", field="input")
    if len(text) > settings.max_text_chars:
        raise BadRequest(f"text is {len(text)} characters; the limit is {settings.max_text_chars} (MAX_TEXT_CHARS)",
                         field="input", max_chars=settings.max_text_chars)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not np.isfinite(speed):
        raise BadRequest(f"speed must be a number between {SPEED_MIN} and {SPEED_MAX}", field="speed")
    if not SPEED_MIN <= float(speed) <= SPEED_MAX:
        raise BadRequest(f"speed {speed} is outside {SPEED_MIN}..{SPEED_MAX}", field="speed")
    if not isinstance(fmt, str):
        raise BadRequest("format must be a string", field="response_format")
    fmt = check_format(fmt)
    if voice is not None and (not isinstance(voice, str) or not voice.strip()):
        raise BadRequest("voice must be a non-empty string", field="voice")
    if voice is not None:
        parse_voice(voice)  # syntax and names now; existence once the voices are loaded
    lang_code = None
    if lang is not None:
        if not isinstance(lang, str):
            raise BadRequest("lang must be a string", field="lang")
        lang_code = language_code(lang)
    return SpeechRequest(text=text, voice=voice, speed=float(speed), format=fmt, lang=lang_code)


def language_code(lang: str) -> str:
    """Kokoro's one-letter code for 'a', 'en-us', 'en-gb', 'es', ...; 400 for languages this build cannot speak."""
    key = lang.strip().lower()
    code = key if key in LANGUAGES else _LANG_ALIASES.get(key)
    if code is None or code not in SPOKEN_CODES:
        known = ", ".join(f"{c} ({LANGUAGES[c][0]})" for c in SPOKEN_CODES)
        why = "needs misaki[ja] / misaki[zh], not installed" if code in ("j", "z") else "unknown"
        raise BadRequest(f"language {lang!r} is not available ({why}); use one of: {known}", field="lang")
    return code


# --- voices -----------------------------------------------------------------------------------
def parse_voice(spec: str) -> list[tuple[str, float]]:
    """'af_bella(2)+af_sky(1)' or 'af_bella,af_sky' -> [(name, weight)]; 400 on bad syntax or names."""
    parts = [p for p in re.split(r"[+,]", spec)]
    if len(parts) > MAX_VOICE_PARTS:
        raise BadRequest(f"a voice mix may combine at most {MAX_VOICE_PARTS} voices", field="voice")
    mix = []
    for part in parts:
        match = _VOICE_PART_RE.match(part)
        name = match.group(1).lower() if match else part.strip()
        if not match or not VOICE_NAME_RE.match(name):
            raise VoiceNotFound(f"invalid voice name {name[:80]!r}: use names like af_heart, or a mix like "
                                "af_bella(2)+af_sky(1)", field="voice")
        weight = float(match.group(2)) if match.group(2) else 1.0
        if weight <= 0:
            raise BadRequest(f"voice weight for {name!r} must be positive", field="voice")
        mix.append((name, weight))
    return mix


def mix_packs(packs: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Weighted average of voice packs (each (510, 1, 256) float32)."""
    total = float(sum(weights))
    out = np.zeros_like(packs[0], dtype=np.float32)
    for pack, weight in zip(packs, weights, strict=True):
        out += pack.astype(np.float32) * (weight / total)
    return out


def voice_language(name: str) -> dict[str, str]:
    code = name[:1]
    espeak, language = LANGUAGES.get(code, ("", "unknown"))
    return {"name": name, "lang_code": code, "language": language, "locale": espeak}


class VoiceBank:
    """Voice packs by name, read on demand through `read(name)` and kept in a small LRU cache."""

    def __init__(self, names: list[str], read: Callable[[str], np.ndarray]) -> None:
        self.names = sorted(names)
        self._read = read
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def pack(self, name: str) -> np.ndarray:
        with self._lock:  # readers such as NpzFile are not safe across threads
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
            pack = np.asarray(self._read(name), dtype=np.float32).reshape(-1, 1, STYLE_WIDTH)
            self._cache[name] = pack
            while len(self._cache) > VOICE_CACHE_SIZE:
                self._cache.popitem(last=False)
        return pack

    def resolve(self, spec: str | None, default: str) -> tuple[str, np.ndarray]:
        """(voice label, style pack) for a request's voice; the default, else the first voice, when None."""
        if not self.names:
            raise ModelUnavailable("no voices are installed for the TTS model", model="tts")
        if spec is None:
            name = default if default in self.names else self.names[0]
            if name != default:
                logger.info("DEFAULT_VOICE %s is not installed; using %s", default, name)
            return name, self.pack(name)
        mix = parse_voice(spec)
        missing = [name for name, _ in mix if name not in self.names]
        if missing:
            raise VoiceNotFound(f"unknown voice {missing[0]!r}; available: {', '.join(self.names)}",
                                available=self.names)
        if len(mix) == 1:
            return mix[0][0], self.pack(mix[0][0])
        label = "+".join(f"{name}({weight:g})" for name, weight in mix)
        return label, mix_packs([self.pack(name) for name, _ in mix], [weight for _, weight in mix])


def npz_names(path: Path) -> list[str]:
    """Array names in an .npz without reading the arrays."""
    with zipfile.ZipFile(path) as archive:
        return [name[:-4] for name in archive.namelist() if name.endswith(".npy")]


def list_voices(settings: Settings) -> list[dict[str, str]]:
    """Voices the configured TTS backend would serve, read from disk only (no model, no torch)."""
    if settings.backend_for("tts") == "onnx":
        from backend.pipelines.tts import kokoro_onnx

        names = kokoro_onnx.voice_names(settings)
    else:
        from backend.pipelines.tts import kokoro_torch

        names = kokoro_torch.voice_names(settings)
    return [voice_language(name) for name in sorted(names)]


# --- G2P --------------------------------------------------------------------------------------
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
                raise ModelUnavailable(
                    "KOKORO_G2P=misaki needs the spaCy English model en_core_web_sm, which is not installed; "
                    "install it (pip install en_core_web_sm from a wheel you trust, e.g. "
                    "https://github.com/explosion/spacy-models/releases) or set KOKORO_G2P=espeak", model="tts")
            from misaki import en, espeak

            return en.G2P(trf=False, british=code == "b", fallback=espeak.EspeakFallback(british=code == "b"), unk="")
        from misaki.espeak import EspeakG2P

        return EspeakG2P(language=LANGUAGES[code][0])

    def __call__(self, text: str, code: str = "a") -> str:
        with self._lock:
            phonemes, _ = self._get(code)(text)
        return (phonemes or "").strip()


# --- splitting ------------------------------------------------------------------------------------
def count_tokens(phonemes: str, vocab: dict[str, int]) -> int:
    return sum(1 for ch in phonemes if ch in vocab)


def _cut_phonemes(phonemes: str, vocab: dict[str, int], limit: int) -> list[str]:
    """Split an over-long phoneme string at word gaps (or anywhere, for one giant word)."""
    pieces, current = [], ""
    for word in phonemes.split(" "):
        candidate = f"{current} {word}".strip()
        if current and count_tokens(candidate, vocab) > limit:
            pieces.append(current)
            candidate = word
        while count_tokens(candidate, vocab) > limit:
            head, kept = "", 0
            for ch in candidate:
                kept += ch in vocab
                if kept > limit:
                    break
                head += ch
            pieces.append(head)
            candidate = candidate[len(head):]
        current = candidate
    if current:
        pieces.append(current)
    return pieces


def plan_pieces(text: str, phonemize: Callable[[str], str], vocab: dict[str, int],
                limit: int = MAX_TOKENS) -> list[str]:
    """Phoneme pieces of at most `limit` tokens, cut at sentence, then clause, then word boundaries.

    The first sentence is its own piece so streaming starts after one sentence; later sentences
    are packed together up to the limit (fewer, longer model calls).
    """
    units: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sentence:
            continue
        phonemes = phonemize(sentence)
        if count_tokens(phonemes, vocab) <= limit:
            units.append(phonemes)
            continue
        for clause in (c.strip() for c in _CLAUSE_END.split(sentence)):
            clause_phonemes = phonemize(clause) if clause else ""
            units.extend(_cut_phonemes(clause_phonemes, vocab, limit))
    units = [u for u in units if count_tokens(u, vocab)]
    pieces: list[str] = []
    for unit in units:
        if len(pieces) >= 2:
            merged = f"{pieces[-1]} {unit}"
            if count_tokens(merged, vocab) <= limit:
                pieces[-1] = merged
                continue
        pieces.append(unit)
    return pieces


# --- the pipeline both backends share -----------------------------------------------------------------
@dataclass
class SpeechFeatures:
    """A validated request turned into model inputs: token-id pieces, a style pack and a speed."""

    pieces: list[list[int]]
    style: np.ndarray
    speed: float
    voice: str
    format: str


class KokoroPipeline(Pipeline):
    """Kokoro TTS over any backend: subclasses load weights and implement `_synthesize`."""

    name = "tts"
    sample_rate = SAMPLE_RATE_HZ

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.vocab: dict[str, int] = {}
        self.voices: VoiceBank | None = None
        self.phonemizer: Phonemizer | None = None
        self.source = ""

    def _load_phonemizer(self) -> None:
        self.phonemizer = Phonemizer(self.settings)
        self.phonemizer.prepare("a")

    @abstractmethod
    def _synthesize(self, token_ids: list[int], style: np.ndarray, speed: float) -> np.ndarray:
        """float32 samples at 24 kHz for one piece of at most MAX_TOKENS ids; style is (1, 256)."""

    def preprocess(self, request: SpeechRequest) -> SpeechFeatures:
        """Voice lookup, G2P and splitting; everything that can fail fails here, before streaming."""
        assert self.voices is not None and self.phonemizer is not None
        voice, style = self.voices.resolve(request.voice, self.settings.default_voice)
        code = request.lang or (voice[0] if voice[:1] in SPOKEN_CODES else "a")
        phonemizer = self.phonemizer
        pieces = plan_pieces(request.text, lambda text: phonemizer(text, code), self.vocab,
                             limit=self.settings.tts_piece_tokens)
        ids = [[self.vocab[ch] for ch in piece if ch in self.vocab] for piece in pieces]
        if not any(ch.isalpha() for piece in pieces for ch in piece):  # punctuation only: nothing to say
            raise BadRequest("the text has nothing to speak (no pronounceable words)", field="input")
        return SpeechFeatures(pieces=ids, style=style, speed=request.speed, voice=voice, format=request.format)

    def run(self, features: SpeechFeatures) -> Iterator[np.ndarray]:
        """One block of samples per piece, synthesised only when the consumer asks for it."""
        for token_ids in features.pieces:
            style = features.style[len(token_ids) - 1].reshape(1, STYLE_WIDTH)
            yield np.asarray(self._synthesize(token_ids, style, features.speed), dtype=np.float32).reshape(-1)

    def postprocess(self, raw: Iterator[np.ndarray]) -> np.ndarray:
        """The whole clip (non-streaming callers)."""
        blocks = list(raw)
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "source": self.source, "g2p": self.settings.kokoro_g2p,
                "voices": len(self.voices.names) if self.voices else 0, "sample_rate": self.sample_rate}
