"""float32 mono samples -> wav, flac, mp3, opus, aac, pcm bytes, whole or as a stream of chunks.

libsndfile (through soundfile) encodes flac, mp3 and ogg/opus; wav and pcm are written here so
a streamed WAV can carry "unknown length" sizes (0xFFFFFFFF, as ffmpeg and OpenAI stream it).
libsndfile has no AAC encoder: `aac` is FFmpeg's native AAC-LC encoder through PyAV, in ADTS
framing (every frame carries its own header, so a stream can be played from any point and
needs no trailer or seek-back). PyAV is imported on the first aac request only (~35 MB); without
it installed, `aac` is refused with a 400 that names the formats this build can write.
"""
from __future__ import annotations

import importlib.util
import io
import struct
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np

from backend.errors import UnsupportedFormat

# format -> (libsndfile major format, subtype); None = written here
_SNDFILE: dict[str, tuple[str, str] | None] = {
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "opus": ("OGG", "OPUS"),
    "flac": ("FLAC", "PCM_16"),
    "wav": None,
    "pcm": None,
}
CONTENT_TYPES = {
    "mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus", "flac": "audio/flac",
    "wav": "audio/wav", "pcm": "audio/L16", "aac": "audio/aac",
}
# format -> (PyAV container, codec, bit rate in bit/s): encoded by FFmpeg through PyAV
_PYAV = {"aac": ("adts", "aac", 64_000)}
_PYAV_INSTALLED = importlib.util.find_spec("av") is not None
SUPPORTED_FORMATS = tuple(_SNDFILE) + (tuple(_PYAV) if _PYAV_INSTALLED else ())
# Formats clients may ask for (OpenAI's list) that this build cannot write, and why.
UNAVAILABLE_FORMATS = {} if _PYAV_INSTALLED else {"aac": "PyAV (the av package) is not installed"}
_UNKNOWN_SIZE = 0xFFFFFFFF
# Formats sent only once complete (their header needs the total length); see encode_stream.
WHOLE_FILE_FORMATS = ("flac",)
SPOOL_MEMORY_BYTES = 1 * 2**20
SPOOL_CHUNK_BYTES = 64 * 2**10
# libsndfile applies a bitrate mode only together with a compression level; 0.5 is 64 kbit/s CBR at 24 kHz.
_STREAM_OPTIONS = {"mp3": {"compression_level": 0.5, "bitrate_mode": "CONSTANT"}}


def check_format(fmt: str) -> str:
    """The normalised format name, or UnsupportedFormat naming what this build can encode."""
    name = str(fmt).strip().lower()
    if name in SUPPORTED_FORMATS:
        return name
    supported = ", ".join(SUPPORTED_FORMATS)
    if name in UNAVAILABLE_FORMATS:
        raise UnsupportedFormat(f"response_format {name!r} cannot be encoded by this build "
                                f"({UNAVAILABLE_FORMATS[name]}); use one of: {supported}",
                                supported=list(SUPPORTED_FORMATS))
    raise UnsupportedFormat(f"unknown audio format {fmt!r}; use one of: {supported}",
                            supported=list(SUPPORTED_FORMATS))


def _pcm16(samples: np.ndarray) -> bytes:
    clipped = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def _wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte PCM16 mono WAV header; data_bytes None = unknown length (streaming)."""
    data_size = _UNKNOWN_SIZE if data_bytes is None else data_bytes
    riff_size = _UNKNOWN_SIZE if data_bytes is None else 36 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data_size))


class _TailBuffer(io.RawIOBase):
    """A seekable sink that hands out what was written and forgets it.

    libsndfile seeks back at close to finish some headers (FLAC's STREAMINFO totals, MP3's
    tag); bytes already sent cannot change, so rewrites below the sent mark are dropped. The
    formats streamed here all allow those fields to stay "unknown".
    """

    def __init__(self) -> None:
        super().__init__()
        self._sent = 0  # absolute offset of the first byte still held
        self._tail = bytearray()
        self._pos = 0
        self._end = 0

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def write(self, data) -> int:  # type: ignore[override]
        data = bytes(data)
        start, stop = self._pos, self._pos + len(data)
        keep_from = max(start, self._sent)
        if stop > keep_from:
            chunk = data[keep_from - start:]
            offset = keep_from - self._sent
            if offset > len(self._tail):
                self._tail.extend(b"\0" * (offset - len(self._tail)))
            self._tail[offset:offset + len(chunk)] = chunk
        self._pos = stop
        self._end = max(self._end, stop)
        return len(data)

    def readinto(self, buffer) -> int:  # type: ignore[override]
        offset = self._pos - self._sent
        if offset < 0:
            return 0
        chunk = self._tail[offset:offset + len(buffer)]
        buffer[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = bytes(self._tail)
        self._sent += len(self._tail)
        self._tail.clear()
        return data


# MPEG-1 / MPEG-2(.5) layer III bitrates in kbit/s by header index.
_MP3_KBPS = {3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _drop_tag_frame(data: bytes) -> bytes:
    """Drop LAME's first frame, a placeholder for the VBR/Info tag that is filled in only at close.

    Sent unfilled, it makes decoders guess the length from its bitrate, which is not the
    stream's (libmpg123 then reads a fraction of the audio).
    """
    if len(data) < 4 or data[0] != 0xFF or (data[1] & 0xE0) != 0xE0:
        return data
    version = (data[1] >> 3) & 0b11
    kbps = _MP3_KBPS[3 if version == 3 else 2][data[2] >> 4]
    rate = _MP3_RATES.get(version, (0, 0, 0))[(data[2] >> 2) & 0b11] if (data[2] >> 2) & 0b11 < 3 else 0
    if not kbps or not rate:
        return data
    length = (144 if version == 3 else 72) * kbps * 1000 // rate + ((data[2] >> 1) & 1)
    frame = data[4:length]
    if any(frame) and b"Xing" not in frame and b"Info" not in frame:
        return data  # a real audio frame
    return data[length:]


class _AvStream:
    """One PyAV output (container + audio stream) writing into a _TailBuffer; mono float32 in."""

    def __init__(self, fmt: str, sample_rate: int) -> None:
        import av

        container, codec, bit_rate = _PYAV[fmt]
        self.sink = _TailBuffer()
        self._rate = sample_rate
        self._output = av.open(self.sink, mode="w", format=container)
        self._stream = self._output.add_stream(codec, rate=sample_rate, layout="mono")
        self._stream.bit_rate = bit_rate
        self._frame = av.AudioFrame

    def write(self, samples: np.ndarray) -> None:
        if samples.size == 0:
            return
        frame = self._frame.from_ndarray(np.clip(samples, -1.0, 1.0).reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = self._rate
        for packet in self._stream.encode(frame):  # PyAV re-chunks into the codec's 1024-sample frames
            self._output.mux(packet)

    def close(self) -> None:
        if self._output is not None:
            for packet in self._stream.encode(None):  # flush the encoder's look-ahead
                self._output.mux(packet)
            self._output.close()
            self._output = None


class StreamEncoder:
    """Encode a sequence of sample blocks into one stream of bytes, block by block."""

    def __init__(self, fmt: str, sample_rate: int) -> None:
        self.format = check_format(fmt)
        self.sample_rate = sample_rate
        self._started = False
        self._file = None
        self._sink: _TailBuffer | None = None
        if self.format in _PYAV:
            self._file = _AvStream(self.format, sample_rate)
            self._sink = self._file.sink
        elif _SNDFILE[self.format] is not None:
            import soundfile

            major, subtype = _SNDFILE[self.format]  # type: ignore[misc]
            self._sink = _TailBuffer()
            # Constant bitrate: a streamed MP3 cannot have its VBR tag rewritten, and decoders
            # then take the length from size / bitrate, which is exact only for CBR.
            self._file = soundfile.SoundFile(self._sink, mode="w", samplerate=sample_rate, channels=1,
                                             format=major, subtype=subtype, **_STREAM_OPTIONS.get(self.format, {}))

    def encode(self, samples: np.ndarray) -> bytes:
        """Bytes for the next block (the header comes with the first)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._file is not None:
            assert self._sink is not None
            self._file.write(np.clip(samples, -1.0, 1.0))
            data = self._sink.take()
            if self.format == "mp3" and not self._started and data:
                data = _drop_tag_frame(data)
            self._started = self._started or bool(data)
            return data
        head = b""
        if not self._started and self.format == "wav":
            head = _wav_header(self.sample_rate, None)
        self._started = True
        return head + _pcm16(samples)

    def finish(self) -> bytes:
        """Whatever the encoder still holds (last frames, trailer)."""
        if self._file is not None:
            assert self._sink is not None
            self._file.close()
            self._file = None
            return self._sink.take()
        if not self._started and self.format == "wav":
            self._started = True
            return _wav_header(self.sample_rate, None)
        return b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def encode_stream(blocks: Iterable[np.ndarray], fmt: str, sample_rate: int) -> Iterator[bytes]:
    """Encoded bytes as each block of samples arrives; empty chunks are skipped.

    FLAC is the exception: libsndfile readers cannot read a FLAC whose STREAMINFO says "length
    unknown", so it is encoded into a spooled file (memory up to SPOOL_MEMORY_BYTES, then disk),
    its header finished, and sent when synthesis is done.
    """
    if check_format(fmt) in WHOLE_FILE_FORMATS:
        yield from _spooled(blocks, fmt, sample_rate)
        return
    encoder = StreamEncoder(fmt, sample_rate)
    try:
        for block in blocks:
            data = encoder.encode(block)
            if data:
                yield data
        tail = encoder.finish()
        if tail:
            yield tail
    finally:
        encoder.close()


def _spooled(blocks: Iterable[np.ndarray], fmt: str, sample_rate: int) -> Iterator[bytes]:
    import soundfile

    major, subtype = _SNDFILE[fmt]  # type: ignore[misc]
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        with soundfile.SoundFile(spool, mode="w", samplerate=sample_rate, channels=1, format=major,
                                 subtype=subtype) as sink:
            for block in blocks:
                sink.write(np.clip(np.asarray(block, dtype=np.float32).reshape(-1), -1.0, 1.0))
        spool.seek(0)
        while chunk := spool.read(SPOOL_CHUNK_BYTES):
            yield chunk


def encode(samples: np.ndarray, fmt: str, sample_rate: int) -> bytes:
    """The whole clip in one container with exact sizes in its header."""
    fmt = check_format(fmt)
    if fmt in _PYAV:  # ADTS has no header to finish: the stream is the file
        return b"".join(encode_stream([samples], fmt, sample_rate))
    if fmt == "wav":
        pcm = _pcm16(samples)
        return _wav_header(sample_rate, len(pcm)) + pcm
    if fmt == "pcm":
        return _pcm16(samples)
    import soundfile

    major, subtype = _SNDFILE[fmt]  # type: ignore[misc]
    out = io.BytesIO()
    soundfile.write(out, np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0), sample_rate,
                    format=major, subtype=subtype, **_STREAM_OPTIONS.get(fmt, {}))
    return out.getvalue()
