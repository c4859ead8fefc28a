"""Model input features in numpy, matching transformers' feature extractors numerically.

`whisper_log_mel` reproduces WhisperFeatureExtractor (log10 mel power spectrogram of 30 s,
clamped to 8 below its maximum and scaled); `ast_fbank` reproduces ASTFeatureExtractor's
numpy path (Kaldi-style log mel filterbank: DC removal, pre-emphasis, Hann window, padded or
cut to `max_length` frames, AudioSet normalisation). The onnx backend uses these so the lean
runtime needs neither torch nor transformers; tests/unit/test_features.py holds both to
transformers' own extractors.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE_HZ = 16000

# WhisperFeatureExtractor defaults (the published whisper checkpoints all use them).
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_CHUNK_S = 30

# ASTFeatureExtractor defaults: Kaldi fbank over 25 ms frames every 10 ms, AudioSet statistics.
AST_FRAME = 400
AST_HOP = 160
AST_FFT = 512
AST_PREEMPHASIS = 0.97
AST_MEL_FLOOR = 1.192092955078125e-07  # float32 epsilon, Kaldi's floor
AST_MEAN = -4.2677393
AST_STD = 4.5689974


def _hz_to_mel(freq: np.ndarray | float, scale: str) -> np.ndarray | float:
    if scale == "kaldi":
        return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)
    # Slaney: linear below 1 kHz, logarithmic above.
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(freq, 1e-12) / 1000.0) * (27.0 / np.log(6.4)), mels)


def _mel_to_hz(mels: np.ndarray, scale: str) -> np.ndarray:
    if scale == "kaldi":
        return 700.0 * (np.exp(mels / 1127.0) - 1.0)
    freq = 200.0 * mels / 3.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels - 15.0)), freq)


def _triangles(fft_freqs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[n_bins, n_mels] triangular filters with corners at `edges` (same unit as fft_freqs)."""
    diff = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


@lru_cache(maxsize=4)
def whisper_mel_filters(n_mels: int = 80, n_fft: int = WHISPER_N_FFT, sample_rate: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Slaney-normalised Slaney-scale mel filters, [n_fft//2+1, n_mels] float64."""
    n_bins = 1 + n_fft // 2
    mel_edges = np.linspace(_hz_to_mel(0.0, "slaney"), _hz_to_mel(8000.0, "slaney"), n_mels + 2)
    hz_edges = _mel_to_hz(mel_edges, "slaney")
    filters = _triangles(np.linspace(0, sample_rate // 2, n_bins), hz_edges)
    filters *= (2.0 / (hz_edges[2:n_mels + 2] - hz_edges[:n_mels]))[None, :]
    filters.flags.writeable = False
    return filters


@lru_cache(maxsize=4)
def kaldi_mel_filters(n_mels: int = 128, n_fft: int = AST_FFT, sample_rate: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Kaldi-scale filters triangular in mel space from 20 Hz to Nyquist, [n_fft//2+1, n_mels] float64."""
    n_bins = 1 + n_fft // 2
    mel_edges = np.linspace(_hz_to_mel(20.0, "kaldi"), _hz_to_mel(sample_rate // 2, "kaldi"), n_mels + 2)
    bin_hz = sample_rate / ((n_bins - 1) * 2)
    filters = _triangles(_hz_to_mel(bin_hz * np.arange(n_bins), "kaldi"), mel_edges)
    filters.flags.writeable = False
    return filters


def _frames(signal: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """[n_frames, frame] read-only view of overlapping frames starting every `hop` samples."""
    n_frames = 1 + (signal.size - frame) // hop
    return np.lib.stride_tricks.as_strided(
        signal, shape=(n_frames, frame), strides=(signal.strides[0] * hop, signal.strides[0]), writeable=False)


def _power(frames: np.ndarray, n_fft: int) -> np.ndarray:
    # transformers stores the float64 FFT as complex64 before taking |X|^2 in float64: same here.
    spectrum = np.fft.rfft(frames, n=n_fft, axis=-1).astype(np.complex64)
    return np.abs(spectrum, dtype=np.float64) ** 2


def whisper_log_mel(audio: np.ndarray, n_mels: int = 80, chunk_s: int = WHISPER_CHUNK_S,
                    n_fft: int = WHISPER_N_FFT, hop: int = WHISPER_HOP) -> np.ndarray:
    """[n_mels, chunk_s*100] float32 log-mel of 16 kHz mono audio, zero-padded or cut to chunk_s."""
    n_samples = chunk_s * SAMPLE_RATE_HZ
    signal = np.zeros(n_samples, dtype=np.float64)
    clip = np.asarray(audio, dtype=np.float32).reshape(-1)[:n_samples]
    signal[:clip.size] = clip
    signal = np.pad(signal, n_fft // 2, mode="reflect")  # centred frames
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    power = _power(_frames(signal, n_fft, hop) * window, n_fft)  # [frames, bins]
    mel = np.maximum(1e-10, power @ whisper_mel_filters(n_mels, n_fft)).T  # [n_mels, frames]
    log_spec = np.log10(mel).astype(np.float32)[:, :-1]  # Whisper drops the last frame
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def ast_fbank(audio: np.ndarray, n_mels: int = 128, max_length: int = 1024, *, normalize: bool = True,
              mean: float = AST_MEAN, std: float = AST_STD) -> np.ndarray:
    """[max_length, n_mels] float32 Kaldi-style log-mel filterbank of 16 kHz mono audio."""
    signal = np.asarray(audio, dtype=np.float32).reshape(-1).astype(np.float64)
    n_frames = 0 if signal.size < AST_FRAME else 1 + (signal.size - AST_FRAME) // AST_HOP
    fbank = np.zeros((max_length, n_mels), dtype=np.float32)
    used = min(n_frames, max_length)
    if used:
        frames = _frames(signal, AST_FRAME, AST_HOP)[:used]
        frames = frames - frames.mean(axis=1, keepdims=True)  # DC offset, per frame
        emphasised = np.empty_like(frames)
        emphasised[:, 1:] = frames[:, 1:] - AST_PREEMPHASIS * frames[:, :-1]
        emphasised[:, 0] = frames[:, 0] * (1 - AST_PREEMPHASIS)
        window = np.hanning(AST_FRAME)  # symmetric Hann, as Kaldi's "hanning"
        power = _power(emphasised * window, AST_FFT)
        mel = np.maximum(AST_MEL_FLOOR, power @ kaldi_mel_filters(n_mels, AST_FFT))
        fbank[:used] = np.log(mel)
    if normalize:
        fbank = (fbank - mean) / (std * 2)
    return fbank.astype(np.float32, copy=False)
