"""Shared fixtures: settings, app, client, and fake pipelines that allocate real memory."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from backend import create_app
from backend.memory import readings
from backend.pipelines.base import Pipeline
from backend.registry import ModelRegistry, ModelSpec
from config import Settings, build_settings

ROOT = Path(__file__).resolve().parent.parent
MB = readings.MB


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: real-shape or long runs, excluded from the default suite")


class FakePipeline(Pipeline):
    """Holds `size_mb` of real, touched memory; its 'inference' sums it."""

    backend = "fake"
    builds = 0
    _builds_lock = threading.Lock()

    def __init__(self, name: str, size_mb: float, load_s: float = 0.0) -> None:
        self.name, self.size_mb, self.load_s = name, size_mb, load_s
        self.weights: np.ndarray | None = None

    def load(self) -> None:
        with FakePipeline._builds_lock:
            FakePipeline.builds += 1
        time.sleep(self.load_s)
        self.weights = np.ones(int(self.size_mb * MB) // 8, dtype=np.float64)  # ones: pages are touched

    def preprocess(self, request: Any) -> Any:
        return request

    def run(self, features: Any) -> float:
        assert self.weights is not None
        return float(self.weights[:1000].sum())

    def postprocess(self, raw: Any) -> Any:
        return {"sum": raw}


# Small live objects interleaved with a heap pipeline's blocks, as a real process has: they
# keep the freed blocks' pages from returning to the OS unless malloc_trim is called.
_LIVE_SMALL_OBJECTS: list[bytearray] = []


class FakeHeapPipeline(FakePipeline):
    """Like FakePipeline, but its memory is many small heap blocks (torch.load-style weights)."""

    def load(self) -> None:
        blocks = []
        for _ in range(int(self.size_mb * MB) // 20000):
            blocks.append(bytearray(b"\x01" * 20000))
            _LIVE_SMALL_OBJECTS.append(bytearray(64))
        self.weights = blocks  # type: ignore[assignment]

    def run(self, features: Any) -> float:
        return float(len(self.weights or []))


class BrokenPipeline(FakePipeline):
    def load(self) -> None:
        time.sleep(self.load_s)  # long enough for concurrent requests to join the same build
        raise RuntimeError("weights file is corrupt")


def fake_spec(name: str, size_mb: float, *, estimate_mb: float | None = None, pinned: bool = False,
              enabled: bool = True, load_s: float = 0.0, cls: type[FakePipeline] = FakePipeline) -> ModelSpec:
    return ModelSpec(name=name, factory=lambda: cls(name, size_mb, load_s),
                     estimate_mb=size_mb if estimate_mb is None else estimate_mb,
                     enabled=enabled, pinned=pinned, description=f"fake {size_mb} MB")


def budget_above_now(extra_mb: float, margin_mb: float = 0) -> float:
    """A budget that leaves `extra_mb` free above this process's current memory."""
    readings.release_memory()
    return readings.rss_mb() + margin_mb + extra_mb


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
def make_settings() -> Any:
    def make(**overrides: Any) -> Settings:
        defaults: dict[str, Any] = {"model_ttl_s": -1, "prometheus_multiproc_dir": None}
        return build_settings(**{**defaults, **overrides})
    return make


@pytest.fixture
def make_app(make_settings: Any) -> Iterator[Any]:
    apps = []

    def make(specs: list[ModelSpec] | None = None, **overrides: Any):
        app = create_app(make_settings(**overrides))
        app.config["TESTING"] = True
        if specs is not None:
            registry = app.extensions["registry"]
            for spec in specs:
                registry.register(spec)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["registry"].shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """Real Gunicorn with gunicorn_config.py on a free loopback port; stopped by pid."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # The server sees only the settings a test gives it: "no env" means the defaults.
        settings_vars = {name.upper() for name in Settings.model_fields}
        full_env = {k: v for k, v in os.environ.items() if k.upper() not in settings_vars}
        full_env.update({"PORT": str(port), "PYTHONUNBUFFERED": "1"}, **env)
        self.log = ROOT / f".pytest-gunicorn-{port}.log"
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "backend.wsgi:app"],
            cwd=ROOT, env=full_env, stdout=self._log_file, stderr=subprocess.STDOUT)

    def wait_ready(self, path: str = "/health", timeout_s: float = 60) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + path, timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gunicorn not ready after {timeout_s}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        self.log.unlink(missing_ok=True)


@pytest.fixture
def live_server() -> Iterator[Any]:
    servers: list[LiveServer] = []

    def start(env: dict[str, str] | None = None, wait_path: str = "/health", timeout_s: float = 60) -> LiveServer:
        server = LiveServer(env or {}, free_port())
        servers.append(server)
        server.wait_ready(wait_path, timeout_s)
        return server

    yield start
    for server in servers:
        server.stop()
