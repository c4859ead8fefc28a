"""backend/audio/encode.py: every format, whole and streamed, decodes to the same audio."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from backend.audio.encode import SUPPORTED_FORMATS, check_format, encode, encode_stream
from backend.errors import UnsupportedFormat

RATE = 24000
MAGIC = {"wav": (0, b"RIFF"), "flac": (0, b"fLaC"), "opus": (0, b"OggS"), "mp3": (0, b"\xff")}
SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "opus": "OPUS", "mp3": "MPEG_LAYER_III"}


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def decode(data: bytes, fmt: str) -> np.ndarray:
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767
    info = soundfile.info(io.BytesIO(data))
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, SUBTYPES[fmt])
    audio, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    assert rate == RATE
    return audio


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
@pytest.mark.parametrize("streamed", [False, True])
def test_format_round_trip(fmt: str, streamed: bool) -> None:
    audio = tone(3.0)
    blocks = [audio[:20000], audio[20000:21000], audio[21000:]]
    data = b"".join(encode_stream(blocks, fmt, RATE)) if streamed else encode(audio, fmt, RATE)
    if fmt in MAGIC:
        offset, magic = MAGIC[fmt]
        assert data[offset:offset + len(magic)] == magic
    got = decode(data, fmt)
    # mp3 and opus add encoder delay / padding; the lossless ones are exact to 16-bit.
    assert abs(len(got) / RATE - 3.0) < (0.1 if fmt in ("mp3", "opus") else 1e-9)
    if fmt in ("wav", "flac", "pcm"):
        assert np.abs(got - audio).max() < 1e-4
    else:
        assert 0.2 < np.sqrt(np.mean(got ** 2)) < 0.4  # the tone's RMS (0.28) survives the codec


def test_streamed_wav_starts_with_a_header_and_sends_each_block_at_once() -> None:
    chunks = list(encode_stream([tone(0.5), tone(0.5)], "wav", RATE))
    assert chunks[0][:4] == b"RIFF" and chunks[0][40:44] == b"\xff\xff\xff\xff"  # length unknown while streaming
    assert len(chunks) == 2 and len(chunks[1]) == 0.5 * RATE * 2


def test_streamed_mp3_yields_audio_before_the_end() -> None:
    chunks = []
    for chunk in encode_stream((tone(1.0) for _ in range(5)), "mp3", RATE):
        chunks.append(chunk)
    assert len(chunks) >= 5  # one or more per block, not one at the end


def test_aac_is_refused_naming_what_this_build_can_write() -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        check_format("aac")
    assert caught.value.status == 400
    assert "AAC" in caught.value.message and "mp3, opus, flac, wav, pcm" in caught.value.message
    with pytest.raises(UnsupportedFormat):
        list(encode_stream([tone(0.1)], "aac", RATE))
