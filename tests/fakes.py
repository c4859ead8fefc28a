"""Fake pipelines that hold real memory, importable without pytest (tests and tests/budget_app.py)."""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from backend.memory import readings
from backend.pipelines.base import Pipeline
from backend.registry import ModelSpec, fixed_estimate

MB = readings.MB


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


# What leaky models left behind: their memory stays resident after close, as glibc's heap kept
# freed activations or a library leaked (the issue-11 worker that "keeps ~130 MB" after an unload).
LEAKED: list[object] = []


class LeakyPipeline(FakePipeline):
    """Like FakePipeline, but closing it gives nothing back."""

    def close(self) -> None:
        LEAKED.append(self.weights)
        super().close()


class BrokenPipeline(FakePipeline):
    def load(self) -> None:
        time.sleep(self.load_s)  # long enough for concurrent requests to join the same build
        raise RuntimeError("weights file is corrupt")


def fake_spec(name: str, size_mb: float, *, estimate_mb: float | None = None, pinned: bool = False,
              enabled: bool = True, load_s: float = 0.0, cls: type[FakePipeline] = FakePipeline) -> ModelSpec:
    return ModelSpec(name=name, factory=lambda: cls(name, size_mb, load_s),
                     estimate=fixed_estimate(size_mb if estimate_mb is None else estimate_mb),
                     enabled=enabled, pinned=pinned, description=f"fake {size_mb} MB")


class ScriptedWindows:
    """Mixin for a WindowedClassifier backend whose logits for successive windows are given;
    records the window sizes it was shown. Call `follow(logits)` in __init__."""

    backend = "scripted"

    def follow(self, logits: Any) -> None:
        self._script = iter(np.asarray(logits, dtype=np.float32))
        self.windows_seen: list[int] = []

    def load(self) -> None:
        pass

    def features(self, window: np.ndarray) -> np.ndarray:
        self.windows_seen.append(window.size)
        return window[:10]

    def logits(self, features: np.ndarray) -> np.ndarray:
        return next(self._script)
