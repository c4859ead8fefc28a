"""The Kokoro TTS pipeline both backends share: a validated request -> phoneme pieces -> samples -> encoded audio.

The torch and ONNX pipelines differ only in how they load weights, list and read voice packs,
and turn (token ids, style, speed) into samples (`KokoroPipeline._synthesize`). Requests are
validated before the model is touched (backend.api.schemas.tts makes SpeechRequest); preprocess
checks what needs the model (the voice exists, there is something to say) before any audio is
sent; run only calls the model, piece by piece and lazily; postprocess encodes.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.audio.encode import CONTENT_TYPES, encode, encode_stream
from backend.errors import BadRequest
from backend.pipelines.base import Pipeline
from backend.pipelines.tts.g2p import SPOKEN_CODES, Phonemizer, g2p_modules
from backend.pipelines.tts.pieces import plan_pieces
from backend.pipelines.tts.voices import STYLE_WIDTH, VoiceBank, VoiceMix
from config import Settings

SAMPLE_RATE_HZ = 24000


@dataclass(frozen=True)
class SpeechRequest:
    """A validated synthesis request; voice None means the pipeline's default."""

    text: str
    voice: VoiceMix | None
    speed: float
    format: str
    lang: str | None


@dataclass
class SpeechFeatures:
    """A request turned into model inputs: token-id pieces, a style pack, a speed, and how to encode."""

    pieces: list[list[int]]
    style: np.ndarray
    speed: float
    voice: str
    format: str


@dataclass
class SpeechBlocks:
    """What run() returns: float32 samples at 24 kHz per piece, synthesised as they are iterated."""

    blocks: Iterator[np.ndarray]
    pieces: int
    voice: str
    format: str


@dataclass
class Speech:
    """What postprocess() returns: encoded audio, whole (bytes) or as chunks, and what the response says of it."""

    content: bytes | Iterator[bytes]
    voice: str  # the voice label that spoke: a name or a mix
    format: str
    mimetype: str
    sample_rate_hz: int = SAMPLE_RATE_HZ

    @property
    def streamed(self) -> bool:
        return not isinstance(self.content, bytes)


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

    @classmethod
    def runtime_modules(cls, settings: Settings) -> tuple[str, ...]:
        return cls.runtime + g2p_modules(settings)

    @staticmethod
    def voice_names(settings: Settings) -> list[str]:
        """Voices this backend would serve, read from disk only (no model, no torch)."""
        raise NotImplementedError

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

    def run(self, features: SpeechFeatures) -> SpeechBlocks:
        """The pieces' samples, each synthesised only when the consumer asks for it."""
        return SpeechBlocks(blocks=self._blocks(features), pieces=len(features.pieces), voice=features.voice,
                            format=features.format)

    def _blocks(self, features: SpeechFeatures) -> Iterator[np.ndarray]:
        for token_ids in features.pieces:
            style = features.style[len(token_ids) - 1].reshape(1, STYLE_WIDTH)
            yield np.asarray(self._synthesize(token_ids, style, features.speed), dtype=np.float32).reshape(-1)

    def postprocess(self, raw: SpeechBlocks) -> Speech:
        """Encoded audio: one piece whole, in one container with exact sizes in its header; several
        as a stream of chunks, each encoded as its piece is synthesised (memory does not grow with the text)."""
        fmt, mimetype = raw.format, CONTENT_TYPES[raw.format]
        if raw.pieces == 1:
            blocks = list(raw.blocks)
            audio = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
            return Speech(encode(audio, fmt, SAMPLE_RATE_HZ), raw.voice, fmt, mimetype)
        return Speech(encode_stream(raw.blocks, fmt, SAMPLE_RATE_HZ), raw.voice, fmt, mimetype)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "source": self.source, "g2p": self.settings.kokoro_g2p,
                "voices": len(self.voices.names) if self.voices else 0, "sample_rate": self.sample_rate}
