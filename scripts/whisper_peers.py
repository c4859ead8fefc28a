"""CTranslate2 (through faster-whisper, test-only) as a peer for our Whisper, and as the judge of our TTS.

`Ct2Peer.language_probabilities(features)` runs CTranslate2's own Whisper on the [n_mels, 3000]
log-mel we computed (backend.audio.features.whisper_log_mel), so any difference is the model;
`Ct2Peer.own_detection(audio)` is faster-whisper's `detect_language(audio)`, whose front end
pads the log-mel *after* normalising it (with 0, i.e. log10 power -4) instead of padding the
audio, so clips shorter than 30 s see a different input.
Probabilities are returned over `codes` (our language order), softmax over language tokens only
(what CTranslate2's detect_language computes, and what our pipelines compute).
`Ct2Peer.transcribe(audio, language)` is faster-whisper's greedy transcript: the intelligibility
judge of Kokoro's speech (scripts/intelligibility.py). faster-whisper and ctranslate2 are in
requirements-dev.txt only: nothing at run time imports this module.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class Ct2Peer:
    def __init__(self, ct2_dir: Path | str, codes: list[str], threads: int = 0) -> None:
        from faster_whisper import WhisperModel

        # float32 compute: the stored float16 weights widened, as our fp32 torch/ONNX models hold them.
        self.model = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=threads)
        self.codes = list(codes)

    def _ordered(self, results: list[tuple[str, float]]) -> np.ndarray:
        probabilities = {token.removeprefix("<|").removesuffix("|>"): prob for token, prob in results}
        return np.array([probabilities[code] for code in self.codes], dtype=np.float64)

    def language_probabilities(self, features: np.ndarray) -> np.ndarray:
        """[len(codes)] probabilities of the first decoder step on our own features."""
        import ctranslate2

        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32))
        return self._ordered(self.model.model.detect_language(view)[0])

    def own_detection(self, audio: np.ndarray) -> np.ndarray:
        """[len(codes)] probabilities from faster-whisper's detect_language(audio) (its own front end)."""
        _, _, ranked = self.model.detect_language(audio=np.asarray(audio, dtype=np.float32))
        return self._ordered([(f"<|{code}|>", prob) for code, prob in ranked])

    def transcribe(self, audio: np.ndarray, language: str) -> str:
        """faster-whisper's greedy transcript of 16 kHz audio in a known language (temperature 0, no VAD)."""
        segments, _ = self.model.transcribe(np.asarray(audio, dtype=np.float32), language=language, beam_size=1,
                                            temperature=0.0, condition_on_previous_text=False, vad_filter=False,
                                            without_timestamps=True)
        return " ".join(segment.text.strip() for segment in segments)
