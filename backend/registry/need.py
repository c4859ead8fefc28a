"""What admitting a model is expected to add, what a loaded one keeps for its next request, and
the figures admission decides from: read from the cost book (measured, by any worker) or else
from the model's estimate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.registry.admission import ModelFigures
from backend.registry.costs import TRUSTED_SAMPLES, CostBook, MeasuredCost
from backend.registry.spec import Estimate, ModelSpec, ModelState

if TYPE_CHECKING:
    from backend.registry.lifecycle import ModelHandle


@dataclass(frozen=True)
class Need:
    """What admitting one model is expected to add, and where the figure comes from."""

    model_mb: float  # the model's own cost (measured, else the estimate's weights + allowance)
    imports_mb: float  # its runtime's import in this process
    fresh_imports_mb: float  # the same in a freshly started worker
    source: str  # "estimate from files", "measured here", "measured by another worker (pid N)"
    estimate: Estimate
    measured: MeasuredCost | None

    @property
    def mb(self) -> float:
        return self.model_mb + self.imports_mb

    @property
    def fresh_mb(self) -> float:
        return self.model_mb + self.fresh_imports_mb


def need_for(spec: ModelSpec, key: str, costs: CostBook) -> Need:
    """What admitting `spec` adds now: measured figures (any worker's) under `key` if there are any, else the estimate."""
    estimate = spec.estimate()
    measured = costs.get(key)
    model_mb = measured.cost_mb() if measured is not None else None
    if model_mb is not None and measured is not None and not measured.request_peaks:
        # Loaded but no request measured yet (e.g. its worker was killed in the first one):
        # the load figures miss the activations, so the estimate still bounds it from below.
        model_mb = max(model_mb, estimate.model_mb)
    elif model_mb is not None and measured is not None and len(measured.request_peaks) < TRUSTED_SAMPLES:
        # Too few requests measured: they may all have been small ones (issue 24's property test
        # found a tiny first request making room for a long one), so the family's allowance for
        # activations bounds them from below until TRUSTED_SAMPLES are.
        model_mb = max(model_mb, (measured.measured_mb or 0.0) + estimate.allowance_mb)
    if model_mb is None:
        source, model_mb = "estimate from files", estimate.model_mb
    elif costs.measured_here(key):
        source = "measured here"
    else:
        source = f"measured by another worker (pid {measured.pid})"  # type: ignore[union-attr]
    return Need(model_mb, estimate.imports_mb, estimate.fresh_imports_mb, source, estimate, measured)


def headroom_mb(handle: ModelHandle, costs: CostBook) -> float:
    """Memory a loaded model may still need above its steady size while it serves a request."""
    measured = costs.get(handle.key) if handle.key else None
    if measured is not None and measured.request_peak_mb is not None:
        if len(measured.request_peaks) >= TRUSTED_SAMPLES:
            return measured.request_peak_mb
        # Too few requests measured: the family's allowance for activations bounds them from below.
        return max(measured.request_peak_mb, handle.spec.estimate().allowance_mb)
    if handle.request_peak_mb is not None:
        return handle.request_peak_mb
    estimate = handle.spec.estimate()  # not measured yet: assume the estimate
    return max(0.0, estimate.model_mb - (handle.measured_mb or 0.0))


def model_figures(handle: ModelHandle, costs: CostBook) -> ModelFigures:
    """What admission knows of `handle`."""
    return ModelFigures(name=handle.spec.name, loaded=handle.state is ModelState.LOADED, in_use=handle.in_use,
                        pinned=handle.spec.pinned, last_used=handle.last_used,
                        resident_mb=handle.measured_mb or 0.0, headroom_mb=headroom_mb(handle, costs))
