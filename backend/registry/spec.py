"""What the registry is told about each pipeline: how to build it, whether it can be, what it is expected to cost."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: the registry never imports a pipeline
    from backend.pipelines.base import Availability, Pipeline


class ModelState(str, Enum):
    DISABLED = "disabled"
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    LOADED = "loaded"


@dataclass(frozen=True)
class Estimate:
    """What a build is expected to add before it was ever measured, MB, in parts that say where they come from."""

    weights_mb: float = 0.0  # weight bytes at the dtype it runs in, from its files
    allowance_mb: float = 0.0  # the family's activations and runtime buffers above the weights (catalog)
    imports_mb: float = 0.0  # importing its runtime in this process (0 once imported; catalog)
    fresh_imports_mb: float = 0.0  # importing its runtime in a freshly started worker

    @property
    def model_mb(self) -> float:
        """The model's own cost, imports excluded: what a measurement replaces."""
        return self.weights_mb + self.allowance_mb


@dataclass(frozen=True)
class ModelSpec:
    """How to build one pipeline, whether its files are there, and what it is expected to cost."""

    name: str
    factory: Callable[[], Pipeline]
    #: called at each admission: the import part drops to 0 once the runtime is imported
    estimate: Callable[[], Estimate]
    enabled: bool = True
    pinned: bool = False
    description: str = ""
    #: requests one worker runs through this model at once; the rest queue. Each running request
    #: holds its own activations, so this bounds the model's transient memory.
    max_concurrency: int = 1
    #: requests admitted at once when the pipeline hands its max_concurrency running slots out piece by
    #: piece (backend.pipelines.turns); 0 = max_concurrency, each request holding a slot from start to end
    admitted: int = 0
    #: from the files alone, before anything is built or evicted; None = always servable
    availability: Callable[[], Availability] | None = None
    #: imports the runtime before the build, so that import is measured apart from the model
    import_runtime: Callable[[], None] | None = None
    #: names what the measured costs are shared under (model files, backend, cost settings); "" = this
    #: process only (fakes)
    cost_key: Callable[[], str] | None = None
    #: where it runs instead of this service (animation with JOBS_BACKEND=rq: "an RQ jobs worker");
    #: "" = here. /ready then reports it servable there and judges neither its files nor its cost.
    runs_elsewhere: str = ""
    #: what a request's size counts (backend.registry.request_cost), shown with the cost figures: "tokens", "s"
    size_unit: str = ""
    #: the largest size a request can ask (TTS: TTS_PIECE_TOKENS); a request of unknown size counts as it.
    #: None = no bound known: unknown sizes count above every measured one
    size_cap: float | None = None


def fixed_estimate(mb: float) -> Callable[[], Estimate]:
    """An estimate that never changes (fake pipelines, tests)."""
    estimate = Estimate(weights_mb=mb)
    return lambda: estimate
