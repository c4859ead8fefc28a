"""Voices: names and mixes ("af_bella(2)+af_sky(1)"), style packs, and the bank that reads them on demand.

A voice's first letter is its language (backend.pipelines.tts.g2p.LANGUAGES), the second its
gender. A pack is Kokoro's (510, 1, 256) float32 style table: one style per phoneme count.
"""
from __future__ import annotations

import logging
import re
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import numpy as np

from backend.errors import BadRequest, ModelUnavailable, VoiceNotFound
from backend.pipelines.tts.g2p import LANGUAGES

logger = logging.getLogger(__name__)

STYLE_WIDTH = 256
VOICE_CACHE_SIZE = 8  # voice packs are 510 x 256 float32 = 0.5 MB each
MAX_VOICE_PARTS = 8
VOICE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_VOICE_PART_RE = re.compile(r"^\s*([^()\s]+)\s*(?:\(\s*([0-9]*\.?[0-9]+)\s*\))?\s*$")

VoiceMix = list[tuple[str, float]]  # [(name, weight)], what parse_voice returns


def parse_voice(spec: str) -> VoiceMix:
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


def mix_label(mix: VoiceMix) -> str:
    """How a voice is named in headers and logs: 'af_heart', or 'af_bella(2)+af_sky(1)' for a mix."""
    return mix[0][0] if len(mix) == 1 else "+".join(f"{name}({weight:g})" for name, weight in mix)


def pick_default(installed: Collection[str], configured: str) -> str | None:
    """The voice that speaks when none is named: DEFAULT_VOICE if installed, else the first installed one."""
    if configured in installed:
        return configured
    return min(installed) if installed else None


def installed_mix(mix: VoiceMix | None, installed: Collection[str], aliases: Mapping[str, str],
                  default: str | None) -> VoiceMix | None:
    """A request's voice in installed voices, decided from the voice names on disk (no model loaded).

    An installed name stays; an alias (OpenAI's `alloy`, ... from VOICE_ALIASES) becomes its Kokoro
    voice, or the default voice when that one is not installed here; any other name is a 400
    naming the installed voices. None (no voice asked for) stays None: the default voice.
    """
    if mix is None:
        return None
    resolved = []
    for name, weight in mix:
        if name not in installed and name in aliases:
            name = aliases[name] if aliases[name] in installed else default or name
        if name not in installed:
            names = sorted(installed)
            raise VoiceNotFound(f"unknown voice {name!r}; available: {', '.join(names) or 'none'}"
                                f"{'; or one of ' + ', '.join(sorted(aliases)) if aliases else ''}",
                                field="voice", available=names, aliases=sorted(aliases))
        resolved.append((name, weight))
    return resolved


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

    def resolve(self, mix: VoiceMix | None, default: str) -> tuple[str, np.ndarray]:
        """(voice label, style pack) for a request's parsed voice; the default, else the first voice, when None."""
        if not self.names:
            raise ModelUnavailable("no voices are installed for the TTS model", model="tts")
        if mix is None:
            name = pick_default(self.names, default)
            assert name is not None
            if name != default:
                logger.info("DEFAULT_VOICE %s is not installed; using %s", default, name)
            return name, self.pack(name)
        missing = [name for name, _ in mix if name not in self.names]
        if missing:
            raise VoiceNotFound(f"unknown voice {missing[0]!r}; available: {', '.join(self.names)}",
                                available=self.names)
        if len(mix) == 1:
            return mix[0][0], self.pack(mix[0][0])
        return mix_label(mix), mix_packs([self.pack(name) for name, _ in mix], [weight for _, weight in mix])


def npz_names(path: Path) -> list[str]:
    """Array names in an .npz without reading the arrays."""
    with zipfile.ZipFile(path) as archive:
        return [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
