"""What the registry is told about each pipeline: how to build it and what it is expected to cost."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: the registry never imports a pipeline
    from backend.pipelines.base import Pipeline


class ModelState(str, Enum):
    DISABLED = "disabled"
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    LOADED = "loaded"


@dataclass(frozen=True)
class ModelSpec:
    """How to build one pipeline and what it is expected to cost before it was ever measured."""

    name: str
    factory: Callable[[], Pipeline]
    estimate_mb: float
    enabled: bool = True
    pinned: bool = False
    description: str = ""
    #: requests one worker runs through this model at once; the rest queue. Each running request
    #: holds its own activations, so this bounds the model's transient memory.
    max_concurrency: int = 1
