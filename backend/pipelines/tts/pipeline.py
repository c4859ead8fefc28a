"""The Kokoro TTS pipeline both backends share: a validated request -> phoneme pieces -> samples -> encoded audio.

The torch and ONNX pipelines differ only in how they load weights, list and read voice packs,
and turn (token ids, style, speed) into samples (`KokoroPipeline._synthesize`). Requests are
validated before the model is touched (backend.api.schemas.tts makes SpeechRequest); preprocess
checks what needs the model (the voice exists, pronunciations use known phonemes, there is
something to say) before any audio is sent; run only calls the model, piece by piece and lazily,
and joins the pieces (joins.py: silence trimmed, a pause by boundary); postprocess encodes.

Text on its way to the model: inline controls are masked (markup.py), the rest is normalised
(normalize.py: numbers, money, dates, addresses in words) unless the request says
normalize=false, G2P'd sentence by sentence, and cut into pieces (pieces.py) that start short
and grow. Phoneme input (input_type="phonemes") skips normalisation and G2P.
"""
from __future__ import annotations

from abc import abstractmethod
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.audio.encode import CONTENT_TYPES, encode, encode_stream
from backend.errors import BadRequest, UnprocessableEntity
from backend.pipelines.base import Pipeline
from backend.pipelines.turns import PieceTurns
from backend.pipelines.tts import joins, markup
from backend.pipelines.tts.g2p import Phonemizer, g2p_code, g2p_modules
from backend.pipelines.tts.length import check_speech_length
from backend.pipelines.tts.markup import Pause, Phonemes
from backend.pipelines.tts.normalize import normalize
from backend.pipelines.tts.pieces import Piece, contended_cut, cut_marks, plan_pieces
from backend.pipelines.tts.voices import STYLE_WIDTH, VoiceBank, VoiceMix
from backend.pipelines.tts.words import WordSpan, WordTime, WordTrack, align, own_each, token_spans, word_times
from config import Settings

SAMPLE_RATE_HZ = 24000
INPUT_TYPES = ("text", "phonemes")
JOINABLE = ("word", "clause", "sentence")  # boundaries that join_pieces joins across (not a pause or paragraph)
WARM_UP_PHONEMES = "wˈɔɹm ˈʌp."  # a short piece run once after load, outside any request's timing


@dataclass(frozen=True)
class SpeechRequest:
    """A validated synthesis request; voice None means the pipeline's default."""

    text: str
    voice: VoiceMix | None
    speed: float
    format: str
    lang: str | None
    normalize: bool = True  # numbers, money, dates, addresses into words before G2P
    input_type: str = "text"  # or "phonemes": Kokoro phonemes, no normalisation or G2P
    timed: bool = False  # word start/end times too (captions); the audio is then returned whole
    whole: bool = False  # answered as one file (`stream: false`): nobody hears the first piece early


@dataclass(frozen=True)
class TokenPiece:
    """One model call's token ids and the boundary after it (pieces.BOUNDARIES)."""

    token_ids: list[int]
    boundary: str
    words: tuple[WordSpan, ...] = ()  # with timing: each word's tokens in this piece


@dataclass
class SpeechFeatures:
    """A request turned into model inputs: token-id pieces and pauses, a style pack, a speed, and how to encode."""

    plan: list[TokenPiece | Pause]
    style: np.ndarray
    speed: float
    voice: str
    format: str
    words: list[str] | None = None  # with timing: the spoken words, WordSpan.word indexes them

    @property
    def longest_piece_tokens(self) -> int:
        """Token ids of the longest piece: what one model call's activations grow with (the request's size)."""
        return max((len(item.token_ids) for item in self.plan if isinstance(item, TokenPiece)), default=0)


@dataclass(frozen=True)
class SpokenWord:
    """A word and when it is said in the returned audio, in seconds (rounded to the millisecond, here only)."""

    word: str
    start_time: float
    end_time: float


@dataclass
class SpeechBlocks:
    """What run() returns: float32 samples at 24 kHz per piece, synthesised as they are iterated; with timing,
    `times` fills as the blocks are iterated (samples in the joined audio)."""

    blocks: Iterator[np.ndarray]
    pieces: int
    voice: str
    format: str
    words: list[str] | None = None
    times: list[WordTime] | None = None


@dataclass
class Speech:
    """What postprocess() returns: encoded audio, whole (bytes) or as chunks, and what the response says of it."""

    content: bytes | Iterator[bytes]
    voice: str  # the voice label that spoke: a name or a mix
    format: str
    mimetype: str
    sample_rate_hz: int = SAMPLE_RATE_HZ
    words: list[SpokenWord] | None = None  # with timing (request.timed): each word's start and end

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
        # The model's running slots, taken one piece at a time by the requests admitted to it (turns.py).
        self.turns = PieceTurns(settings.model_concurrency, settings.tts_turn_rule)
        self._marks: tuple[int | None, dict[int, str]] | None = None  # the vocab's ids contended_cut cuts at

    def _load_phonemizer(self) -> None:
        self.phonemizer = Phonemizer(self.settings)
        self.phonemizer.prepare("a")

    @property
    def pause_lengths(self) -> joins.PauseLengths:
        s = self.settings
        return joins.PauseLengths(clause=s.tts_pause_clause_s, sentence=s.tts_pause_sentence_s,
                                  paragraph=s.tts_pause_paragraph_s)

    def warm_up(self) -> None:
        """One short synthesis right after load, so the first request does not pay for first-run setup."""
        assert self.voices is not None
        if not self.voices.names:
            return
        ids = [self.vocab[ch] for ch in WARM_UP_PHONEMES if ch in self.vocab]
        _, style = self.voices.resolve(None, self.settings.default_voice)
        self._synthesize(ids, style[len(ids) - 1].reshape(1, STYLE_WIDTH), 1.0, last=True)

    @abstractmethod
    def _synthesize(self, token_ids: list[int], style: np.ndarray, speed: float, last: bool = True) -> np.ndarray:
        """float32 samples at 24 kHz for one piece of at most MAX_TOKENS ids; style is (1, 256).

        `last` is False while more pieces of the same request follow (a backend may keep working
        memory between them and release it after the last)."""

    def _synthesize_timed(self, token_ids: list[int], style: np.ndarray, speed: float,
                          last: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """_synthesize's samples and the model's duration of each token in frames of words.FRAME_SAMPLES,
        the two pad tokens included (len(token_ids) + 2 values), already divided by speed."""
        raise self._untimed()

    def _untimed(self) -> UnprocessableEntity:
        return UnprocessableEntity(f"this {self.backend} model gives no word durations: captions are not available",
                                   field="captions")

    @property
    def timed(self) -> bool:
        """Whether this model gives word durations (captions)."""
        return False

    def _release(self) -> None:
        """Give back working memory kept between pieces, when a request ends before its last piece."""

    @classmethod
    def runtime_modules(cls, settings: Settings) -> tuple[str, ...]:
        return cls.runtime + g2p_modules(settings)

    @staticmethod
    def voice_names(settings: Settings) -> list[str]:
        """Voices this backend would serve, read from disk only (no model, no torch)."""
        raise NotImplementedError

    def preprocess(self, request: SpeechRequest) -> SpeechFeatures:
        """Voice lookup, controls, normalisation, G2P and splitting; everything that can fail fails here."""
        assert self.voices is not None and self.phonemizer is not None
        voice, style = self.voices.resolve(request.voice, self.settings.default_voice)
        written = "" if request.input_type == "phonemes" else "".join(
            segment.text for segment in markup.parse(request.text) if isinstance(segment, markup.Text))
        code = g2p_code(written, request.lang, voice)  # 400 for a script that G2P cannot read
        phonemizer = self.phonemizer
        if request.input_type == "phonemes":
            segments = markup.parse_phonemes(request.text)
            phonemize = str  # the text is phonemes already
        else:
            segments = markup.parse(request.text, (lambda text: normalize(text, code)) if request.normalize else None)
            phonemize = lambda text: phonemizer(text, code)  # noqa: E731
        self._check_phonemes(segments, given=request.input_type == "phonemes")
        track, label = None, None
        if request.timed:
            if not self.timed:
                raise self._untimed()
            track = WordTrack()
            if request.input_type == "phonemes":
                label = lambda text, phonemes: own_each(phonemes, track)  # noqa: E731
            else:
                label = lambda text, phonemes: align(text, phonemes, track, phonemize)  # noqa: E731
        # A short first piece only serves a listener who hears it early: an answer sent whole (one file, or
        # captions) is planned without one, so it is fewer model calls, each with its own padding to synthesise.
        first_limit = 0 if request.whole or request.timed else self.settings.tts_first_piece_tokens
        plan = plan_pieces(segments, phonemize, self.vocab, limit=self.settings.tts_piece_tokens,
                           first_limit=first_limit, track=track, label=label)
        pieces = [item for item in plan if isinstance(item, Piece)]
        if not any(ch.isalpha() for piece in pieces for ch in piece.phonemes):  # nothing to say
            raise BadRequest("the text has nothing to speak (no pronounceable words)", field="input")
        tokens = [item if isinstance(item, Pause) else
                  TokenPiece([self.vocab[ch] for ch in item.phonemes if ch in self.vocab], item.boundary,
                             token_spans(item.phonemes, item.owners, self.vocab))
                  for item in plan]
        check_speech_length(sum(len(t.token_ids) for t in tokens if isinstance(t, TokenPiece)), request.speed,
                            self.settings.max_speech_seconds)  # 400 before any synthesis (length.py)
        return SpeechFeatures(plan=[t for t in tokens if isinstance(t, Pause) or t.token_ids], style=style,
                              speed=request.speed, voice=voice, format=request.format,
                              words=track.words if track is not None else None)

    def _check_phonemes(self, segments: list[markup.Segment], given: bool) -> None:
        """Phonemes that bypass G2P (overrides, phoneme input) must be symbols the model knows: 400 otherwise."""
        for segment in segments:
            text = segment.phonemes if isinstance(segment, Phonemes) else segment.text if given and \
                isinstance(segment, markup.Text) else ""
            unknown = sorted({ch for ch in text if ch not in self.vocab and not ch.isspace()})
            if unknown:
                where = f"the pronunciation of [{segment.shown}]" if isinstance(segment, Phonemes) else "the phonemes"
                raise BadRequest(f"{where} use symbols this model does not know: {' '.join(unknown[:20])}",
                                 field="input")

    def run(self, features: SpeechFeatures) -> SpeechBlocks:
        """The joined pieces' samples, each piece synthesised only when the consumer asks for it."""
        times = [] if features.words is not None else None
        return SpeechBlocks(blocks=self._blocks(features, times), pieces=len(features.plan), voice=features.voice,
                            format=features.format, words=features.words, times=times)

    def _blocks(self, features: SpeechFeatures, times: list[WordTime] | None = None) -> Iterator[np.ndarray]:
        """Each piece's samples, trimmed and followed by its join's pause; with `times`, its words' times are
        appended there, in the joined audio's samples (the trimmed start moves them, the trimmed end clips them).
        A contended turn (a request with less left than this piece waits, turns.py) synthesises a long piece's
        head only (split_piece); its tail is the next piece. A short request among others says the rest of
        itself in one call (turns.whole, join_pieces)."""
        lengths, trimming = self.pause_lengths, self.settings.tts_trim_silence
        items = deque(features.plan)
        left = sum(isinstance(item, TokenPiece) for item in items)  # pieces still to synthesise
        held, position = False, 0
        ticket = self.turns.join(left, sum(len(item.token_ids) for item in items if isinstance(item, TokenPiece)))
        try:
            while items:
                item = items.popleft()
                if isinstance(item, Pause):
                    block = joins.silence(item.seconds, SAMPLE_RATE_HZ)
                    position += len(block)
                    yield block
                    continue
                with self.turns.turn(ticket, len(item.token_ids)) as contended:  # one piece, then the next one's turn
                    if self.turns.whole(ticket):  # a short request among others: the rest of it in one call
                        item, joined = self.join_pieces(item, items, self.settings.tts_piece_tokens)
                        if joined:
                            self.turns.merge(ticket, joined, len(item.token_ids))
                            left -= joined
                    elif contended:
                        item, tail = self.split_piece(item, self.settings.tts_contended_piece_tokens)
                        if tail is not None:
                            items.appendleft(tail)
                            self.turns.split(ticket, len(item.token_ids))
                            left += 1
                    left -= 1
                    held = left > 0
                    style = features_style(features.style, len(item.token_ids))
                    if times is None:
                        audio, durations = self._synthesize(item.token_ids, style, features.speed, last=not held), None
                    else:
                        audio, durations = self._synthesize_timed(item.token_ids, style, features.speed,
                                                                  last=not held)
                audio = np.asarray(audio, dtype=np.float32).reshape(-1)
                cut, stop = joins.trim_bounds(audio, SAMPLE_RATE_HZ) if trimming else (0, len(audio))
                if durations is not None and times is not None:
                    times += word_times(item.words, durations, position, cut, stop - cut)
                if trimming:
                    audio = np.concatenate([joins.trim(audio, SAMPLE_RATE_HZ),
                                            joins.gap(item.boundary, lengths, SAMPLE_RATE_HZ)])
                position += len(audio)
                yield audio
        finally:
            self.turns.leave(ticket)  # a closed stream (client gone) frees its place at this piece boundary
            if held:  # the stream was closed before its last piece (client gone)
                self._release()

    def split_piece(self, piece: TokenPiece, cap: int) -> tuple[TokenPiece, TokenPiece | None]:
        """A piece longer than `cap` tokens cut in two at pieces.contended_cut (head, tail); else (piece, None)."""
        if self._marks is None:
            self._marks = cut_marks(self.vocab)
        at = contended_cut(piece.token_ids, cap, *self._marks)
        if at is None:
            return piece, None
        index, boundary = at
        head = TokenPiece(piece.token_ids[:index], boundary,
                          tuple(span for span in piece.words if span.stop <= index))
        tail = TokenPiece(piece.token_ids[index + 1:], piece.boundary,
                          tuple(WordSpan(span.word, span.first - index - 1, span.stop - index - 1)
                                for span in piece.words if span.first > index))
        return head, tail

    def join_pieces(self, piece: TokenPiece, items: deque[TokenPiece | Pause], cap: int) -> tuple[TokenPiece, int]:
        """`piece` joined with the pieces that follow it in `items` (taken from there), a space token between, while
        the joined piece fits `cap` tokens and no pause or paragraph comes between; and how many were joined."""
        if self._marks is None:
            self._marks = cut_marks(self.vocab)
        space, joined = self._marks[0], 0
        while space is not None and items and isinstance(items[0], TokenPiece) and piece.boundary in JOINABLE \
                and len(piece.token_ids) + 1 + len(items[0].token_ids) <= cap:
            tail, shift = items.popleft(), len(piece.token_ids) + 1
            piece = TokenPiece(piece.token_ids + [space] + tail.token_ids, tail.boundary,
                               piece.words + tuple(WordSpan(span.word, span.first + shift, span.stop + shift)
                                                   for span in tail.words))
            joined += 1
        return piece, joined

    def postprocess(self, raw: SpeechBlocks) -> Speech:
        """Encoded audio: one piece whole, in one container with exact sizes in its header; several
        as a stream of chunks, each encoded as its piece is synthesised (memory does not grow with the text)."""
        fmt, mimetype = raw.format, CONTENT_TYPES[raw.format]
        if raw.times is not None:  # captions: the audio whole, then every word's time is known
            blocks = list(raw.blocks)
            audio = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
            return Speech(encode(audio, fmt, SAMPLE_RATE_HZ), raw.voice, fmt, mimetype,
                          words=spoken_words(raw.words or [], raw.times))
        if raw.pieces == 1:
            blocks = list(raw.blocks)
            audio = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
            return Speech(encode(audio, fmt, SAMPLE_RATE_HZ), raw.voice, fmt, mimetype)
        return Speech(encode_stream(raw.blocks, fmt, SAMPLE_RATE_HZ), raw.voice, fmt, mimetype)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "source": self.source, "g2p": self.settings.kokoro_g2p,
                "voices": len(self.voices.names) if self.voices else 0, "sample_rate": self.sample_rate}


def features_style(style: np.ndarray, tokens: int) -> np.ndarray:
    """The voice pack's style row for a piece of `tokens` tokens, as the model takes it: (1, 256)."""
    return style[max(0, tokens - 1)].reshape(1, STYLE_WIDTH)


def spoken_words(names: list[str], times: list[WordTime]) -> list[SpokenWord]:
    """Word times in seconds; a word cut across two pieces (a giant word) is one word from its first start."""
    merged: dict[int, list[int]] = {}
    for time in times:
        span = merged.setdefault(time.word, [time.start, time.end])
        span[1] = max(span[1], time.end)
    return [SpokenWord(names[word], round(start / SAMPLE_RATE_HZ, 3), round(end / SAMPLE_RATE_HZ, 3))
            for word, (start, end) in sorted(merged.items())]
