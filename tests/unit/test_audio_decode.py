"""backend.audio.decode: every container by content, downmix, real resampling, and every bad input."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile as sf
import soxr

from backend.audio.decode import DecodedAudio, decode_audio, require_analysable, resample
from backend.audio.features import SAMPLE_RATE_HZ
from backend.errors import InvalidAudio, PayloadTooLarge, UnprocessableEntity


def encode(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def tone(hz: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE_HZ)[spectrum.argmax()])


@pytest.mark.parametrize("fmt, subtype, rate", [
    ("WAV", "PCM_16", 22050), ("WAV", "FLOAT", 44100), ("FLAC", "PCM_16", 48000), ("OGG", "VORBIS", 32000),
    ("OGG", "OPUS", 48000), ("MP3", "MPEG_LAYER_III", 44100), ("AIFF", "PCM_16", 8000)])
def test_containers_decode_by_content_to_mono_16k(fmt, subtype, rate) -> None:
    stereo = np.stack([tone(440, 2.0, rate), tone(440, 2.0, rate)], axis=1)
    decoded = decode_audio(encode(stereo, rate, fmt, subtype), max_seconds=60)
    assert isinstance(decoded, DecodedAudio)
    assert decoded.samples.dtype == np.float32 and decoded.samples.ndim == 1
    assert decoded.source_format == fmt and decoded.source_channels == 2 and decoded.source_rate_hz == rate
    assert decoded.seconds == pytest.approx(2.0, abs=0.08)  # lossy codecs add priming samples
    assert dominant_hz(decoded.samples) == pytest.approx(440, abs=3)
    assert decoded.describe()["channels"] == 2


def test_speech_wav_from_espeak(speech_wav) -> None:
    decoded = decode_audio(speech_wav, max_seconds=60)
    assert decoded.source_rate_hz == 22050 and decoded.source_channels == 1
    assert 1.5 < decoded.seconds < 8 and np.abs(decoded.samples).max() > 0.1


def test_downmix_averages_channels() -> None:
    left, right = tone(300, 1.0, 16000, 0.4), tone(1200, 1.0, 16000, 0.4)
    decoded = decode_audio(encode(np.stack([left, right], axis=1), 16000, "WAV", "FLOAT"), max_seconds=10)
    np.testing.assert_allclose(decoded.samples, (left + right) / 2, atol=1e-6)


def test_resampling_is_band_limited() -> None:
    # 10 kHz at 44.1 kHz is above the 8 kHz Nyquist of 16 kHz: a real resampler removes it,
    # naive decimation would alias it to 6 kHz.
    decoded = decode_audio(encode(tone(10_000, 1.0, 44100) + tone(1000, 1.0, 44100), 44100, "WAV", "FLOAT"),
                           max_seconds=10)
    spectrum = np.abs(np.fft.rfft(decoded.samples))
    freqs = np.fft.rfftfreq(decoded.samples.size, 1 / SAMPLE_RATE_HZ)
    assert spectrum[np.abs(freqs - 6000) < 50].max() < 1e-3 * spectrum[np.abs(freqs - 1000) < 50].max()


def test_resample_matches_soxr_and_is_noop_at_16k() -> None:
    signal = tone(500, 0.5, 22050)
    np.testing.assert_allclose(resample(signal, 22050), soxr.resample(signal, 22050, 16000, quality="HQ"), atol=1e-6)
    same = tone(500, 0.5, 16000)
    assert resample(same, 16000) is not None and np.array_equal(resample(same, 16000), same)


def test_streaming_decode_equals_one_shot_resample() -> None:
    """Block-by-block resampling gives the same samples as resampling the whole signal."""
    signal = tone(700, 9.3, 22050)  # more than two 4 s blocks
    decoded = decode_audio(encode(signal, 22050, "WAV", "FLOAT"), max_seconds=60)
    whole = soxr.resample(signal, 22050, 16000, quality="HQ")
    assert abs(decoded.samples.size - whole.size) <= 1
    n = min(decoded.samples.size, whole.size)
    np.testing.assert_allclose(decoded.samples[:n], whole[:n], atol=1e-4)


@pytest.mark.parametrize("data, words", [
    (b"", "empty"), (os.urandom(4096), "not a recognised audio file"), (b"hello world " * 100, "not a recognised"),
    (bytes(4096), "not a recognised"), (b"%PDF-1.7\n" + os.urandom(2000), "not a recognised")])
def test_not_audio_is_rejected_by_content(data, words) -> None:
    with pytest.raises(InvalidAudio, match=words) as info:
        decode_audio(data, max_seconds=60)
    assert info.value.status == 400 and "0x" not in info.value.message


def test_header_only_wav_is_zero_length() -> None:
    header_only = encode(tone(440, 0.5, 16000), 16000, "WAV", "PCM_16")[:44]
    with pytest.raises(InvalidAudio, match="zero length"):
        decode_audio(header_only, max_seconds=60)


def test_truncated_mp3_is_a_clear_error() -> None:
    mp3 = encode(tone(440, 2.0, 44100), 44100, "MP3", "MPEG_LAYER_III")
    with pytest.raises(InvalidAudio):
        decode_audio(mp3[:200], max_seconds=60)


def test_nan_samples_are_rejected() -> None:
    samples = tone(440, 0.5, 16000)
    samples[100:200] = np.nan
    with pytest.raises(InvalidAudio, match="NaN"):
        decode_audio(encode(samples, 16000, "WAV", "FLOAT"), max_seconds=60)


def test_duration_limit_is_checked_before_decoding() -> None:
    long_silence = encode(np.zeros(8000 * 70, dtype=np.float32), 8000, "FLAC", "PCM_16")  # compresses to ~KB
    with pytest.raises(PayloadTooLarge, match="MAX_AUDIO_SECONDS") as info:
        decode_audio(long_silence, max_seconds=60)
    assert info.value.status == 413


def test_odd_sample_rate_is_rejected() -> None:
    with pytest.raises(InvalidAudio, match="sample rate"):
        decode_audio(encode(tone(100, 1.0, 800, 0.5), 800, "WAV", "PCM_16"), max_seconds=60)


def test_one_sample_decodes_but_is_not_analysable() -> None:
    decoded = decode_audio(encode(np.array([0.5], dtype=np.float32), 16000, "WAV", "PCM_16"), max_seconds=60)
    assert decoded.samples.size == 1
    with pytest.raises(UnprocessableEntity, match="at least"):
        require_analysable(decoded.samples)


def test_require_analysable() -> None:
    speechish = tone(200, 0.5, 16000)
    assert require_analysable(speechish).dtype == np.float32
    with pytest.raises(UnprocessableEntity, match="silent"):
        require_analysable(np.zeros(16000, dtype=np.float32))
    with pytest.raises(InvalidAudio, match="NaN"):
        require_analysable(np.full(16000, np.nan, dtype=np.float32))
    with pytest.raises(InvalidAudio, match="1-D"):
        require_analysable(np.zeros((2, 16000), dtype=np.float32))
    with pytest.raises(InvalidAudio, match="1-D"):
        require_analysable(None)
    with pytest.raises(UnprocessableEntity):
        require_analysable(np.zeros(0, dtype=np.float32))


def test_one_nan_among_good_samples_is_found() -> None:
    samples = tone(200, 1.0, 16000)
    samples[12345] = np.nan
    with pytest.raises(InvalidAudio, match="NaN"):
        require_analysable(samples)
    samples[12345] = -np.inf
    with pytest.raises(InvalidAudio, match="infinite"):
        require_analysable(samples)


def test_buffer_grows_when_the_length_is_unknown() -> None:
    """The output buffer is sized from the declared length; without one (0) it starts at 60 s and grows."""
    from backend.audio.decode import _read_mono_16k

    signal = tone(300, 75.0, 8000)
    with sf.SoundFile(io.BytesIO(encode(signal, 8000, "FLAC", "PCM_16"))) as sound:
        samples = _read_mono_16k(sound, 8000, max_frames=10**9, max_seconds=600, expected_frames=0)
    assert samples.size == pytest.approx(75 * SAMPLE_RATE_HZ, abs=2)
    assert dominant_hz(samples) == pytest.approx(300, abs=2)


def test_decode_memory_is_estimated_from_the_header() -> None:
    from backend.audio.decode import AudioHeader, decode_mb

    ten_minutes = decode_mb(AudioHeader(rate_hz=16000, channels=1, frames=600 * 16000), max_seconds=600)
    assert 36 < ten_minutes < 38.5  # the 16 kHz output (36.7 MB) and one 4 s block
    wide = decode_mb(AudioHeader(rate_hz=768000, channels=1024, frames=768000), max_seconds=600)
    assert wide > 2900  # one second of 1024 channels at 768 kHz as float32: why the header is bounded first
    unknown = decode_mb(AudioHeader(rate_hz=16000, channels=1, frames=0), max_seconds=60)
    assert unknown == pytest.approx(decode_mb(AudioHeader(16000, 1, 60 * 16000), 60), rel=0.01)


def test_the_probe_reads_the_header_and_applies_the_limits() -> None:
    from backend.audio.decode import probe_audio


    data = encode(np.zeros(16000 * 3, dtype=np.float32), 16000, "WAV")
    header = probe_audio(data, max_seconds=10, max_channels=2, max_rate_hz=48000)
    assert (header.rate_hz, header.channels, header.frames) == (16000, 1, 48000)
    with pytest.raises(PayloadTooLarge):
        probe_audio(data, max_seconds=2, max_channels=2, max_rate_hz=48000)
    with pytest.raises(InvalidAudio, match="MAX_AUDIO_SAMPLE_RATE"):
        probe_audio(data, max_seconds=10, max_channels=2, max_rate_hz=8000)
    with pytest.raises(InvalidAudio, match="empty"):
        probe_audio(b"", max_seconds=10, max_channels=2, max_rate_hz=48000)
