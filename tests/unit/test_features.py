"""The numpy features match transformers' own extractors on speech (espeak-ng), silence and edge lengths."""
from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr

from backend.audio.features import SAMPLE_RATE_HZ, ast_fbank, kaldi_mel_filters, whisper_log_mel, whisper_mel_filters

transformers = pytest.importorskip("transformers")
# transformers' own AST filter bank has an empty top filter and says so; that is the reference.
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """About 4 s of real synthetic speech at 16 kHz, float32."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    wav = subprocess.run(["espeak-ng", "--stdout", "-s", "150", "The quick brown fox jumps over the lazy dog, "
                          "while seven wizards quietly judge the box."], check=True, capture_output=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, SAMPLE_RATE_HZ).astype(np.float32)


@pytest.fixture(scope="module")
def whisper_extractor():
    return transformers.WhisperFeatureExtractor()


@pytest.fixture(scope="module")
def ast_extractor():
    return transformers.ASTFeatureExtractor()


def test_mel_filters_equal_transformers(whisper_extractor, ast_extractor) -> None:
    np.testing.assert_allclose(whisper_mel_filters(80), whisper_extractor.mel_filters, rtol=1e-10, atol=1e-12)
    assert ast_extractor.mel_filters is not None, "torchaudio present: transformers no longer uses its numpy path"
    np.testing.assert_allclose(kaldi_mel_filters(128), ast_extractor.mel_filters, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seconds", [None, 0.3, 31.0])
def test_whisper_log_mel_matches(speech, whisper_extractor, seconds) -> None:
    audio = speech if seconds is None else np.resize(speech, int(seconds * SAMPLE_RATE_HZ))
    expected = whisper_extractor(audio, sampling_rate=SAMPLE_RATE_HZ, return_tensors="np").input_features[0]
    ours = whisper_log_mel(audio)
    assert ours.shape == expected.shape == (80, 3000)
    assert ours.dtype == np.float32
    # With torch installed transformers computes the STFT in float32 (ours and its numpy path
    # in float64): 4e-5 apart at most on log-mel values of order 1.
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


def test_whisper_log_mel_matches_numpy_path(speech, whisper_extractor) -> None:
    """Also equal to transformers' numpy implementation (what runs where torch is absent)."""
    padded = np.zeros(480000, dtype=np.float32)
    padded[:speech.size] = speech
    expected = whisper_extractor._np_extract_fbank_features(padded[None], "cpu")[0]
    np.testing.assert_allclose(whisper_log_mel(speech), expected, atol=1e-6, rtol=0)


def test_whisper_log_mel_of_silence(whisper_extractor) -> None:
    silence = np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)
    expected = whisper_extractor(silence, sampling_rate=SAMPLE_RATE_HZ, return_tensors="np").input_features[0]
    np.testing.assert_allclose(whisper_log_mel(silence), expected, atol=1e-6)


@pytest.mark.parametrize("seconds", [None, 0.02, 12.0])
def test_ast_fbank_matches(speech, ast_extractor, seconds) -> None:
    audio = speech if seconds is None else np.resize(speech, int(seconds * SAMPLE_RATE_HZ))
    expected = ast_extractor(audio, sampling_rate=SAMPLE_RATE_HZ, return_tensors="np").input_values[0]
    ours = ast_fbank(audio)
    assert ours.shape == expected.shape == (1024, 128)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)


def test_ast_fbank_other_length_and_no_normalisation(speech) -> None:
    extractor = transformers.ASTFeatureExtractor(max_length=512, do_normalize=False)
    expected = extractor(speech, sampling_rate=SAMPLE_RATE_HZ, return_tensors="np").input_values[0]
    np.testing.assert_allclose(ast_fbank(speech, max_length=512, normalize=False), expected, atol=1e-5, rtol=0)


def test_features_differ_between_signals(speech) -> None:
    """Guards against a constant output passing the comparisons by accident."""
    noise = np.random.default_rng(0).standard_normal(speech.size).astype(np.float32) * 0.1
    assert np.abs(whisper_log_mel(speech) - whisper_log_mel(noise)).max() > 0.5
    assert np.abs(ast_fbank(speech) - ast_fbank(noise)).max() > 0.5
