"""The one audio decoder: any upload's bytes -> mono float32 at 16 kHz, pure functions.

Formats are recognised by content (libsndfile probes the bytes; file names and declared
types are never trusted): wav, flac, ogg/vorbis, ogg/opus, mp3, aiff and whatever else
libsndfile reads. Decoding streams block by block through a downmix and a soxr resampler, so
memory is bounded by the 16 kHz mono output, and the duration limit is enforced before a
sample is decoded (and again while decoding, for containers that misstate their length).

    probe_audio(data, ...)            -> AudioHeader (rate, channels, frames) from the header, bounds checked
    decode_mb(header, max_seconds)    -> MB decoding it will allocate (admitted against the budget first)
    decode_audio(data, max_seconds)  -> DecodedAudio (samples, source facts)
    resample(samples, from_hz, to_hz) -> float32 (soxr, high quality)
    require_analysable(samples)       -> raises unless the samples are worth analysing
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from backend.audio.features import SAMPLE_RATE_HZ
from backend.errors import InvalidAudio, PayloadTooLarge, UnprocessableEntity

logger = logging.getLogger(__name__)

BLOCK_S = 4  # decode this many seconds of source audio at a time
MIN_SOURCE_RATE_HZ = 1000  # below this nothing is speech; also guards division-by-tiny-rate tricks
MAX_SOURCE_RATE_HZ = 768_000
MIN_AUDIO_S = 0.1  # shorter than a phoneme: nothing to analyse
UNKNOWN_LENGTH_FRAMES = 2**62
SILENCE_PEAK = 1e-4  # about -80 dBFS: below this everywhere, the audio is silent


@dataclass(frozen=True)
class AudioHeader:
    """What an upload's header declares, read without decoding a sample."""

    rate_hz: int
    channels: int
    frames: int  # 0 = unknown (streams that do not say)

    @property
    def seconds(self) -> float:
        return self.frames / self.rate_hz


def probe_audio(data: bytes, *, max_seconds: float, max_channels: int, max_rate_hz: int) -> AudioHeader:
    """The header's rate, channels and length, within the limits, before anything is decoded.

    Raises:
        InvalidAudio: empty, not audio, a sample rate or channel count outside the limits.
        PayloadTooLarge: a declared length over max_seconds.
    """
    if not data:
        raise InvalidAudio("no audio: the upload is empty")
    try:
        with sf.SoundFile(io.BytesIO(data)) as sound:
            rate, channels = int(sound.samplerate), int(sound.channels)
            declared = int(sound.frames) if sound.frames is not None else -1
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InvalidAudio("not a recognised audio file (wav, flac, ogg/opus, mp3 ...): "
                           f"the decoder could not read it ({_reason(exc)})") from exc
    high = min(max_rate_hz, MAX_SOURCE_RATE_HZ)
    if not MIN_SOURCE_RATE_HZ <= rate <= high:
        raise InvalidAudio(f"unsupported sample rate {rate} Hz; accepted: {MIN_SOURCE_RATE_HZ}..{high} Hz "
                           "(MAX_AUDIO_SAMPLE_RATE)")
    if not 1 <= channels <= max_channels:
        raise InvalidAudio(f"the audio has {channels} channels; accepted: 1..{max_channels} (MAX_AUDIO_CHANNELS)")
    frames = declared if 0 < declared < UNKNOWN_LENGTH_FRAMES else 0
    if frames > max_seconds * rate:
        raise _too_long(frames / rate, max_seconds)
    return AudioHeader(rate_hz=rate, channels=channels, frames=frames)


def decode_mb(header: AudioHeader, max_seconds: float) -> float:
    """Memory decoding allocates, MB: the 16 kHz mono output, one block of source frames as float32 in all
    its channels plus its downmix, and the resampler's buffers (a block of each). Unknown lengths count
    as max_seconds."""
    seconds = header.seconds if header.frames else max_seconds
    output = (seconds + 1) * SAMPLE_RATE_HZ * 4
    block_frames = min(BLOCK_S * header.rate_hz, header.frames or BLOCK_S * header.rate_hz)
    block = block_frames * 4 * (header.channels + 2)
    return (output + block) / 2**20


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples at SAMPLE_RATE_HZ plus what the upload was."""

    samples: np.ndarray
    source_format: str
    source_subtype: str
    source_rate_hz: int
    source_channels: int

    @property
    def seconds(self) -> float:
        return self.samples.size / SAMPLE_RATE_HZ

    def describe(self) -> dict[str, object]:
        return {"format": self.source_format, "subtype": self.source_subtype,
                "sample_rate_hz": self.source_rate_hz, "channels": self.source_channels,
                "seconds": round(self.seconds, 3)}


def decode_audio(data: bytes, *, max_seconds: float) -> DecodedAudio:
    """Decode any supported container to mono float32 at 16 kHz.

    Raises:
        InvalidAudio: empty input, not audio, corrupt, no frames, NaN/inf samples, odd sample rate.
        PayloadTooLarge: longer than max_seconds.
    """
    if not data:
        raise InvalidAudio("no audio: the upload is empty")
    try:
        sound = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InvalidAudio("not a recognised audio file (wav, flac, ogg/opus, mp3 ...): "
                           f"the decoder could not read it ({_reason(exc)})") from exc
    with sound:
        rate, channels = int(sound.samplerate), int(sound.channels)
        if not MIN_SOURCE_RATE_HZ <= rate <= MAX_SOURCE_RATE_HZ:
            raise InvalidAudio(f"unsupported sample rate {rate} Hz; accepted: "
                               f"{MIN_SOURCE_RATE_HZ}..{MAX_SOURCE_RATE_HZ} Hz")
        if channels < 1:
            raise InvalidAudio("the audio has no channels")
        max_frames = int(max_seconds * rate)
        declared = int(sound.frames) if sound.frames is not None else -1
        # libsndfile says SF_COUNT_MAX when a stream's length is unknown: then only the read count decides.
        if max_frames < declared < UNKNOWN_LENGTH_FRAMES:
            raise _too_long(declared / rate, max_seconds)
        samples = _read_mono_16k(sound, rate, max_frames, max_seconds,
                                 declared if 0 < declared < UNKNOWN_LENGTH_FRAMES else 0)
        decoded = DecodedAudio(samples=samples, source_format=str(sound.format),
                               source_subtype=str(sound.subtype), source_rate_hz=rate, source_channels=channels)
    if samples.size == 0:
        raise InvalidAudio("the audio has no samples (zero length)")
    return decoded


def _read_mono_16k(sound: sf.SoundFile, rate: int, max_frames: int, max_seconds: float,
                   expected_frames: int) -> np.ndarray:
    """Stream blocks through downmix and resampler into one preallocated buffer.

    The buffer is sized from the declared length, so a 10-minute upload costs its 16 kHz output
    (38 MB) once, not twice as a list of blocks plus their concatenation would. Refuses NaN/inf
    and audio past max_frames.
    """
    stream = None if rate == SAMPLE_RATE_HZ else soxr.ResampleStream(rate, SAMPLE_RATE_HZ, 1, dtype="float32",
                                                                        quality="HQ")
    capacity = expected_frames * SAMPLE_RATE_HZ // rate + SAMPLE_RATE_HZ if expected_frames > 0 else 60 * SAMPLE_RATE_HZ
    out = np.empty(capacity, dtype=np.float32)
    size = 0
    read = 0
    block = max(1, BLOCK_S * rate)

    def append(samples: np.ndarray) -> None:
        nonlocal out, size
        if size + samples.size > out.size:  # misdeclared or unknown length: grow geometrically
            grown = np.empty(max(2 * out.size, size + samples.size), dtype=np.float32)
            grown[:size] = out[:size]
            out = grown
        out[size:size + samples.size] = samples
        size += samples.size

    try:
        while True:
            chunk = sound.read(block, dtype="float32", always_2d=True)
            if chunk.shape[0] == 0:
                break
            read += chunk.shape[0]
            if read > max_frames:
                raise _too_long(read / rate, max_seconds, at_least=True)
            mono = chunk.mean(axis=1, dtype=np.float32) if chunk.shape[1] > 1 else chunk[:, 0]
            if not np.isfinite(mono).all():
                raise InvalidAudio("the audio contains NaN or infinite samples")
            append(mono if stream is None else stream.resample_chunk(mono))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InvalidAudio(f"the audio is corrupt: decoding failed after {read / rate:.2f} s ({_reason(exc)})") from exc
    if stream is not None and read:
        append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return out[:size]  # a view: copying would briefly hold the output twice (the spare tail is < 1 s)


def resample(samples: np.ndarray, from_hz: int, to_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Resample mono float32 with soxr (band-limited, no aliasing); a no-op at equal rates."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if from_hz == to_hz:
        return samples
    return soxr.resample(samples, from_hz, to_hz, quality="HQ").astype(np.float32, copy=False)


def require_analysable(samples: object, min_seconds: float = MIN_AUDIO_S) -> np.ndarray:
    """The samples as 1-D float32, or a typed error: not an array, NaN/inf, too short, silent.

    Raises:
        InvalidAudio: not 1-D numeric samples, or NaN/inf among them.
        UnprocessableEntity: real audio with nothing to analyse (shorter than min_seconds, silent).
    """
    array = np.asarray(samples)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.number):
        raise InvalidAudio(f"audio must be 1-D mono samples, got shape {array.shape} of {array.dtype}")
    array = array.astype(np.float32, copy=False)
    # max/min propagate NaN and show inf without a full-size temporary (np.isfinite / np.abs would
    # allocate one as large as the audio: 38 MB for ten minutes).
    high, low = (float(array.max()), float(array.min())) if array.size else (0.0, 0.0)
    if not (np.isfinite(high) and np.isfinite(low)):
        raise InvalidAudio("the audio contains NaN or infinite samples")
    seconds = array.size / SAMPLE_RATE_HZ
    if seconds < min_seconds:
        raise UnprocessableEntity(f"the audio is {seconds:.3f} s long; at least {min_seconds} s is needed to analyse it",
                                  seconds=round(seconds, 4))
    if max(high, -low) < SILENCE_PEAK:
        raise UnprocessableEntity("the audio is silent (peak below -80 dBFS): there is no voice to analyse")
    return array


def _too_long(seconds: float, max_seconds: float, *, at_least: bool = False) -> PayloadTooLarge:
    more = "more than " if at_least else ""
    return PayloadTooLarge(f"the audio is {more}{seconds:.1f} s long; the limit is {max_seconds:g} s (MAX_AUDIO_SECONDS)",
                           limit_s=max_seconds)


def _reason(exc: BaseException) -> str:
    # libsndfile's own words ("Format not recognised."), without soundfile's "Error opening <BytesIO at 0x..>:".
    text = getattr(exc, "error_string", None) or str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()[:200]
