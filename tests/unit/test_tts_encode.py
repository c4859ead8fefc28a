"""backend/audio/encode.py: every format, whole and streamed, decodes to the same audio."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from backend.audio.encode import SUPPORTED_FORMATS, check_format, encode, encode_stream
from backend.errors import UnsupportedFormat

RATE = 24000
MAGIC = {"wav": (0, b"RIFF"), "flac": (0, b"fLaC"), "opus": (0, b"OggS"), "mp3": (0, b"\xff"), "aac": (0, b"\xff")}
AAC_PRIMING = 1024  # FFmpeg's AAC encoder delays its output by one frame
SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "opus": "OPUS", "mp3": "MPEG_LAYER_III"}


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def decode(data: bytes, fmt: str) -> np.ndarray:
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767
    if fmt == "aac":
        return decode_adts(data)[0]
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
    # mp3, opus and aac add encoder delay / padding; the lossless ones are exact to 16-bit.
    assert abs(len(got) / RATE - 3.0) < (0.1 if fmt in ("mp3", "opus", "aac") else 1e-9)
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


def decode_adts(data: bytes) -> tuple[np.ndarray, int]:
    """An ADTS stream decoded by FFmpeg (PyAV): mono samples and their rate."""
    import av

    with av.open(io.BytesIO(data), format="adts") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac" and stream.channels == 1
        samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(stream)])
        return samples, stream.sample_rate


def chirp(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * (200 + 400 * t) * t)).astype(np.float32)  # no period: alignment is unique


def test_aac_streams_adts_frames_that_decode_to_the_input() -> None:
    audio = chirp(3.0)
    chunks = list(encode_stream([audio[:7000], audio[7000:40000], audio[40000:]], "aac", RATE))
    assert len(chunks) >= 3 and all(chunk[:2] in (b"\xff\xf1", b"\xff\xf9") for chunk in chunks[:1])
    data = b"".join(chunks)
    assert data == encode(audio, "aac", RATE)  # whole = the stream: ADTS has nothing to finish
    got, rate = decode_adts(data)
    assert rate == RATE and len(audio) + AAC_PRIMING <= len(got) < len(audio) + AAC_PRIMING + 1024
    aligned = got[AAC_PRIMING:AAC_PRIMING + len(audio)]
    snr_db = 10 * np.log10(np.sum(audio ** 2) / np.sum((aligned - audio) ** 2))
    assert snr_db > 20, snr_db  # 64 kbit/s AAC-LC of a chirp: ~30 dB here


def test_aac_sends_audio_before_the_stream_ends() -> None:
    sizes = [len(chunk) for chunk in encode_stream((chirp(1.0) for _ in range(4)), "aac", RATE)]
    assert len(sizes) >= 4 and all(sizes[:3])  # each block's frames leave with it, not all at the end


def test_unknown_formats_are_refused_naming_what_this_build_can_write() -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        check_format("aiff")
    assert caught.value.status == 400
    assert "mp3, opus, flac, wav, pcm, aac" in caught.value.message
