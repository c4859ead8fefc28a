"""What admitting a model is expected to add, what a loaded one keeps for its requests, and the
figures admission decides from: read from the cost book (measured, by any worker) or else from
the model's estimate. A request's activations depend on its size (backend.registry.request_cost).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.registry.admission import ModelFigures
from backend.registry.costs import CostBook, MeasuredCost
from backend.registry.request_cost import RequestCost, request_cost
from backend.registry.spec import Estimate, ModelSpec, ModelState

if TYPE_CHECKING:
    from backend.registry.lifecycle import ModelHandle

#: The request's activations when its size is known only once the model has read it (TTS: the
#: pieces come from the loaded model's G2P): the build admits the model alone, the request then
#: its own activations (Lease.admit).
SIZED_LATER = RequestCost(0.0, "admitted once the request's size is known")


@dataclass(frozen=True)
class Need:
    """What admitting one model for one request is expected to add, and where the figures come from."""

    build_mb: float  # what its build adds before any request (measured: the peak while loading, after the first request)
    steady_mb: float  # what it holds once built (measured, else the weights)
    request: RequestCost  # the request's activations, by its size
    imports_mb: float  # its runtime's import in this process
    fresh_imports_mb: float  # the same in a freshly started worker
    source: str  # "estimate from files", "measured here", "measured by another worker (pid N)"
    estimate: Estimate
    measured: MeasuredCost | None

    @property
    def model_mb(self) -> float:
        """The model's own cost with the request's activations, imports excluded."""
        return max(self.build_mb, self.steady_mb + self.request.mb)

    @property
    def mb(self) -> float:
        return self.model_mb + self.imports_mb

    @property
    def fresh_mb(self) -> float:
        return self.model_mb + self.fresh_imports_mb


def need_for(spec: ModelSpec, key: str, costs: CostBook, size: float | None = None, *,
             sized_later: bool = False) -> Need:
    """What admitting `spec` for a request of `size` (None: unknown, its size_cap) adds now: measured
    figures (any worker's) under `key` if there are any, else the estimate. `sized_later`: the build
    admits no activations (the request does, once its size is known)."""
    estimate = spec.estimate()
    measured = costs.get(key)
    build = measured.build_mb() if measured is not None else None
    if build is None or measured is None or measured.measured_mb is None:
        build = steady = estimate.weights_mb
        source = "estimate from files"
    else:
        steady = measured.measured_mb
        if not measured.request_peaks:
            # Loaded but no request measured yet (e.g. its worker was killed in the first one): the
            # load figures miss what a first request leaves behind, so the weights bound it from below.
            steady = max(steady, estimate.weights_mb)
        source = "measured here" if costs.measured_here(key) else f"measured by another worker (pid {measured.pid})"
    # Until enough requests of a size are measured, the family's allowance bounds their activations from below.
    samples = measured.samples if measured is not None else []
    if size is None:
        size = spec.size_cap  # a caller that does not say: the largest a request can ask, if that is known
    request = SIZED_LATER if sized_later else request_cost(samples, size, estimate.allowance_mb, spec.size_unit)
    return Need(build, steady, request, estimate.imports_mb, estimate.fresh_imports_mb, source, estimate, measured)


def headroom_mb(handle: ModelHandle) -> float:
    """Memory a loaded model may still need above its steady size: the activations admitted for its requests."""
    return handle.admitted.mb if handle.admitted is not None else 0.0


def model_figures(handle: ModelHandle) -> ModelFigures:
    """What admission knows of `handle`."""
    return ModelFigures(name=handle.spec.name, loaded=handle.state is ModelState.LOADED, in_use=handle.in_use,
                        pinned=handle.spec.pinned, last_used=handle.last_used,
                        resident_mb=handle.measured_mb or 0.0, headroom_mb=headroom_mb(handle))
