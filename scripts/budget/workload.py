"""Workload profiles: small declarative mixes of calls, driven on loopback by a few threads.

A profile is a list of Call(name, method, path, weight, build): `build(ctx, rng)` returns the
keyword arguments of `requests.request` (json, files, headers...). `{model}` in a path is replaced
by a random model name. Add a profile by adding a list to PROFILES.
"""
from __future__ import annotations

import base64
import io
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
import soundfile as sf

from backend.audio.decode import decode_audio
from backend.audio.features import SAMPLE_RATE_HZ as SAMPLE_RATE
from config import MODEL_NAMES

SHORT_TEXT = "Hello, this is a short test of the speech service."
LONG_TEXT = (
    "The budget check drives a realistic mix of requests against the real server while it samples "
    "memory every tenth of a second. A long paragraph like this one makes the synthesiser work "
    "through several sentences, so its activations, caches and output buffers are as large as a "
    "patient user would make them. If the service survives this in its memory cgroup without being "
    "killed, the configuration can be deployed with some confidence; if not, the report says why. "
) * 2
MEDIUM_TEXT = LONG_TEXT[:LONG_TEXT.index("If the service")].strip()  # three sentences: several TTS pieces


@dataclass
class Context:
    """What request builders need: test audio, the admin key, the model names."""

    api_key: str
    wav: bytes
    models: tuple[str, ...] = MODEL_NAMES

    @property
    def wav_base64(self) -> str:
        return base64.b64encode(self.wav).decode()

    def headers(self) -> dict[str, str]:
        """Sent with every call unless the call sets its own (as a client with a key does)."""
        return {"x-api-key": self.api_key}


Builder = Callable[[Context, random.Random], dict[str, Any]]


@dataclass(frozen=True)
class Call:
    """One kind of request in a mix: relative `weight` decides how often it is sent."""

    name: str
    method: str
    path: str
    weight: float
    build: Builder = field(default=lambda ctx, rng: {})
    #: error codes that answer this call as designed (an analysis call while its model has no export
    #: gets 503 model_unavailable): the verdict does not count them as failures
    expected: frozenset[str] = frozenset()


def _json(body: dict[str, Any]) -> Builder:
    return lambda ctx, rng: {"json": body}


def _wav_file(ctx: Context, rng: random.Random) -> dict[str, Any]:
    return {"files": {"file": ("speech.wav", ctx.wav, "audio/wav")}}


def _audio_base64(ctx: Context, rng: random.Random) -> dict[str, Any]:
    return {"json": {"audioBase64": ctx.wav_base64}}


def _voice_detection(ctx: Context, rng: random.Random) -> dict[str, Any]:
    return {"json": {"language": "English", "audioFormat": "wav", "audioBase64": ctx.wav_base64}}


SPEECH = [
    Call("tts_short", "POST", "/v1/audio/speech", 3, _json({"input": SHORT_TEXT, "response_format": "wav"})),
    Call("tts_long", "POST", "/api/tts", 1, _json({"text": LONG_TEXT, "format": "wav"})),
    Call("voices", "GET", "/api/voices", 1),
    Call("language", "POST", "/api/detect-language", 2, _wav_file),
    Call("ai_voice", "POST", "/api/detect-ai-voice", 2, _audio_base64),
    Call("analyze", "POST", "/api/analyze", 1, _wav_file),
    Call("voice_detection", "POST", "/api/voice-detection", 1, _voice_detection),
    Call("models", "GET", "/api/models", 0.5),
    Call("model_load", "POST", "/api/models/{model}/load", 0.3),
    Call("model_unload", "DELETE", "/api/models/{model}", 0.3),
    # Bad inputs: each must be a clean 4xx that builds nothing.
    Call("bad_tts_empty", "POST", "/api/tts", 0.3, _json({"text": ""})),
    Call("bad_audio", "POST", "/api/analyze", 0.3,
         lambda ctx, rng: {"files": {"file": ("x.wav", b"not audio at all", "audio/wav")}}),
    Call("bad_key", "POST", "/api/voice-detection", 0.2,
         lambda ctx, rng: {"json": {"language": "English", "audioFormat": "wav", "audioBase64": ""},
                           "headers": {"x-api-key": "wrong"}}),
]

FAKE = [
    Call("fake_tts", "POST", "/fake/tts", 3, lambda ctx, rng: {"json": {"hold_ms": rng.choice((5, 20, 60)), "work_mb": 4}}),
    Call("fake_language", "POST", "/fake/language", 2, lambda ctx, rng: {"json": {"hold_ms": 10, "work_mb": 2}}),
    Call("fake_ai_voice", "POST", "/fake/ai_voice", 2, lambda ctx, rng: {"json": {"hold_ms": 30, "work_mb": 8}}),
    Call("health", "GET", "/health", 1),
    Call("models", "GET", "/api/models", 0.5),
    Call("model_load", "POST", "/api/models/{model}/load", 0.4),
    Call("model_unload", "DELETE", "/api/models/{model}", 0.4),
    Call("bad_body", "POST", "/fake/tts", 0.3,
         lambda ctx, rng: {"data": b"{not json", "headers": {"content-type": "application/json"}}),
    Call("bad_model", "POST", "/fake/nope", 0.2, _json({})),
    Call("bad_key", "POST", "/api/models/tts/load", 0.2, lambda ctx, rng: {"headers": {"x-api-key": "wrong"}}),
]

# Life cycle (issue 11): what a fresh install serves with no settings, through ordinary events. Run
# with MAX_REQUESTS small so workers recycle during the run. TTS in OpenAI's shape with OpenAI's
# voice names, short and long texts; analysis calls whose models have no export (offline: 503
# model_unavailable, which must evict nothing) between them; cheap calls that count towards
# MAX_REQUESTS; an unknown voice (400, builds nothing).
UNAVAILABLE = frozenset({"model_unavailable"})
LIFECYCLE = [
    Call("tts_short", "POST", "/v1/audio/speech", 4,
         _json({"model": "tts-1", "input": SHORT_TEXT, "voice": "alloy", "response_format": "mp3"})),
    Call("tts_long", "POST", "/v1/audio/speech", 1.5,
         _json({"model": "tts-1", "input": MEDIUM_TEXT, "voice": "nova", "response_format": "mp3"})),
    Call("tts_api", "POST", "/api/tts", 1, _json({"text": SHORT_TEXT, "format": "wav"})),
    Call("language", "POST", "/api/detect-language", 2, _wav_file, expected=UNAVAILABLE),
    Call("ai_voice", "POST", "/api/detect-ai-voice", 1, _audio_base64, expected=UNAVAILABLE),
    Call("analyze", "POST", "/api/analyze", 1, _wav_file, expected=UNAVAILABLE),
    Call("voices", "GET", "/v1/audio/voices", 1),
    Call("health", "GET", "/health", 1),
    Call("models", "GET", "/api/models", 0.5),
    # Admin unloads make TTS rebuild after its memory was used: what self-recycling is for.
    Call("model_load", "POST", "/api/models/{model}/load", 0.3, expected=UNAVAILABLE),
    Call("model_unload", "DELETE", "/api/models/{model}", 0.3),
    Call("bad_voice", "POST", "/v1/audio/speech", 0.5, _json({"model": "tts-1", "input": "Hi.", "voice": "af_nobody"})),
]

PROFILES: dict[str, list[Call]] = {"speech": SPEECH, "fake": FAKE, "lifecycle": LIFECYCLE}


def speech_wav(seconds: float = 3.0) -> bytes:
    """A few seconds of English speech as 16 kHz mono WAV: espeak-ng if installed, else a synthetic voice.

    espeak-ng speaks at 22.05 kHz; the server's own decoder (downmix, soxr) brings it to 16 kHz.
    """
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "speech.wav"
            try:
                subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(out), LONG_TEXT[:220]],
                               check=True, capture_output=True, timeout=30)
                spoken = out.read_bytes()
            except (subprocess.SubprocessError, OSError):
                spoken = None
        if spoken:
            audio = decode_audio(spoken, max_seconds=120).samples[: int(seconds * SAMPLE_RATE)]
            return _wav_bytes(audio)
    return _wav_bytes(voiced_signal(seconds))


def voiced_signal(seconds: float, rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A speech-like signal: a glottal pulse train with vibrato through three formants, in syllables."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 15 * np.sin(2 * np.pi * 0.7 * t) + 5 * np.sin(2 * np.pi * 5 * t)
    phase = np.cumsum(f0) / rate
    source = (np.mod(phase, 1.0) < 0.1).astype(np.float64) + 0.02 * rng.standard_normal(t.size)
    spectrum = np.fft.rfft(source)
    freqs = np.fft.rfftfreq(t.size, 1 / rate)
    envelope = sum(np.exp(-0.5 * ((freqs - fc) / bw) ** 2) for fc, bw in ((700, 120), (1200, 150), (2600, 250)))
    voiced = np.fft.irfft(spectrum * envelope, n=t.size)
    syllables = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 0.5
    signal = voiced * syllables
    return (0.5 * signal / (np.abs(signal).max() + 1e-9)).astype(np.float32)


def _wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@dataclass
class Result:
    """One request as the client saw it; status 0 = no response (connection refused/reset, timeout)."""

    call: str
    started_s: float
    seconds: float
    status: int
    error_code: str | None = None  # the API's error code, or the client exception's name
    detail: str | None = None  # the client exception's message
    expected: bool = False  # an error the call is designed to get (Call.expected)


class LoadGenerator:
    """`concurrency` threads send every call once, then weighted random calls, until the duration or the cap."""

    def __init__(self, base_url: str, calls: list[Call], ctx: Context, *, concurrency: int, duration_s: float,
                 max_requests: int, timeout_s: float, seed: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url, self.calls, self.ctx = base_url, calls, ctx
        self.concurrency, self.duration_s, self.max_requests = concurrency, duration_s, max_requests
        self.timeout_s, self.seed, self.clock = timeout_s, seed, clock
        self.results: list[Result] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0
        # Every call of the mix is sent once before the weighted draw, so even a short run under a
        # busy machine exercises each endpoint and each bad input (their weights are small).
        self._unsent = list(calls)

    def _take_ticket(self) -> bool:
        with self._lock:
            if self._sent >= self.max_requests:
                return False
            self._sent += 1
            return True

    def _next_call(self, rng: random.Random, weights: list[float]) -> Call:
        with self._lock:
            if self._unsent:
                return self._unsent.pop(0)
        return rng.choices(self.calls, weights)[0]

    def _loop(self, index: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + index)
        weights = [call.weight for call in self.calls]
        with requests.Session() as session:
            while not self.stop.is_set() and self.clock() < deadline and self._take_ticket():
                call = self._next_call(rng, weights)
                path = call.path.replace("{model}", rng.choice(self.ctx.models))
                started = self.clock()
                status, code, detail = 0, None, None
                kwargs = call.build(self.ctx, rng)
                kwargs["headers"] = {**self.ctx.headers(), **kwargs.get("headers", {})}
                try:
                    response = session.request(call.method, self.base_url + path, timeout=self.timeout_s, **kwargs)
                    status = response.status_code
                    if status >= 400:
                        code = _error_code(response)
                except requests.RequestException as exc:
                    code, detail = type(exc).__name__, str(exc)[:300]
                with self._lock:
                    self.results.append(Result(call.name, started, self.clock() - started, status, code, detail,
                                               expected=code in call.expected))

    def run(self) -> list[Result]:
        """Blocks until done; `stop` ends it early (at most one request timeout later)."""
        deadline = self.clock() + self.duration_s
        threads = [threading.Thread(target=self._loop, args=(i, deadline), name=f"load-{i}", daemon=True)
                   for i in range(self.concurrency)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        finally:
            self.stop.set()
        return self.results


def _error_code(response: requests.Response) -> str | None:
    """The API's error code; for envelopes without one (/api/voice-detection's contract), a 503
    with Retry-After is the registry's budget refusal (only BudgetExceeded sends Retry-After)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code"):
        return error["code"]
    if response.status_code == 503 and "Retry-After" in response.headers:
        return "memory_budget_exceeded"
    return None
