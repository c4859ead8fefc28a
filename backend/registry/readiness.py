"""What the registry reports: whether each model can be served (and the fix when not), the idle
baseline that decides "never" from "not now", and the rows of the models snapshot.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from backend.memory import readings
from backend.pipelines.base import Availability  # the contract's vocabulary; no pipeline is imported
from backend.registry.costs import MeasuredCost
from backend.registry.request_cost import RequestCost, envelope
from backend.registry.spec import ModelSpec, ModelState

if TYPE_CHECKING:
    from backend.registry.lifecycle import ModelHandle
    from backend.registry.need import Need

logger = logging.getLogger(__name__)


class CachedAvailability:
    """A model's availability check, remembered until something that can change its answer happens.

    The check reads the disk and the installed packages (importlib's find_spec over the runtime's
    modules, the model files): ~1,700 find_spec calls for every model, most of a /ready's ~50
    CPU-ms, and /ready, the snapshot and each admission's cost key all ask (docs/BENCHMARKS.md,
    issue 26: what a probe costs). Its answer changes when:
    - provisioning, beside the server, writes a model's progress file: `stamp()` is each progress
      file's name, inode and mtime (backend.provision.progress.stamp), which every write changes (each
      file is renamed into place), so the next call after provisioning starts or finishes checks again;
    - the registry says a model's state changed (loaded, unloaded, evicted, refused, found
      unavailable, a build failed): `forget()`;
    - a request asks for a model remembered as not servable: `availability(spec, recheck_missing=True)`
      checks again, so weights copied in by hand serve the next request without a restart.
    No timer: an answer is kept as long as none of these happens.
    """

    def __init__(self, check: Callable[[], Availability], stamp: Callable[[], Hashable] = lambda: None) -> None:
        self._check, self._stamp = check, stamp
        self._lock = threading.Lock()
        self._kept: tuple[Hashable, Availability] | None = None  # (stamp when checked, answer)
        self._generation = 0  # forget() bumps it: an answer checked before is not kept

    def __call__(self) -> Availability:
        stamp = self._stamp()  # before the check: a write during it makes the next call check again
        with self._lock:
            kept, generation = self._kept, self._generation
        if kept is not None and kept[0] == stamp:
            return kept[1]
        answer = self._check()
        with self._lock:
            if generation == self._generation:
                self._kept = (stamp, answer)
        return answer

    def forget(self) -> None:
        with self._lock:
            self._kept, self._generation = None, self._generation + 1


def availability(spec: ModelSpec, *, recheck_missing: bool = False) -> Availability:
    """Whether `spec` can be served, from its files alone; a check that fails says so instead of raising.

    `recheck_missing`: an answer remembered as not servable is checked again (a request's path).
    """
    if spec.availability is None:
        return Availability(servable=True)
    try:
        found = spec.availability()
        if recheck_missing and not found.servable and isinstance(spec.availability, CachedAvailability):
            spec.availability.forget()
            found = spec.availability()
        return found
    except Exception as exc:  # a broken check must not take the service down: say so instead
        logger.exception("availability check of %s failed", spec.name)
        return Availability.missing(f"availability check failed: {exc}", "see the server log")


def forget_availability(spec: ModelSpec) -> None:
    """Check `spec`'s availability again at the next call (its state changed)."""
    if isinstance(spec.availability, CachedAvailability):
        spec.availability.forget()


_master_pss_mb: dict[int, float] = {}  # the master's PSS, read once per master (by pid) in this worker


def idle_baseline_mb(memory: readings.ServiceMemory, boot_pss_mb: float | None, workers: int) -> float:
    """What the service holds with nothing loaded: the master and every worker at this worker's boot size.

    The master's PSS is read once: it holds no model, and what moves it after a worker's boot (the
    sharing of its pages with workers) is a few MB, not worth a smaps read at every probe.
    """
    if boot_pss_mb is not None:
        master = memory.root_pid
        if master == os.getpid():
            return workers * boot_pss_mb
        if master not in _master_pss_mb:
            _master_pss_mb[master] = readings.pss_mb(master)
        return _master_pss_mb[master] + workers * boot_pss_mb
    return memory.used_mb()  # not a Gunicorn worker (tests, flask run): what the process holds now


def readiness_row(handle: ModelHandle, *, available: Callable[[], Availability], need: Callable[[], Need],
                  limit_mb: float, baseline_mb: float, budget_mb: float) -> dict[str, Any]:
    """Can `handle` be served now, and if not, why and the one command that makes it so.

    An enabled model is unservable when its files or runtime are missing, or when even a fresh
    worker could never admit it: its cost exceeds the budget less what the service holds with
    nothing loaded (`baseline_mb`: the master and every worker at this worker's boot size; what
    other workers' models hold now is "not now", not "never").
    """
    name, spec = handle.spec.name, handle.spec
    row: dict[str, Any] = {"name": name, "enabled": spec.enabled, "state": handle.state.value}
    if not spec.enabled:
        return {**row, "servable": False, "reason": "disabled by configuration",
                "fix": f"add {name} to ENABLED_MODELS (and its ENABLE_* switch)"}
    if spec.runs_elsewhere:
        return {**row, "servable": True, "source": spec.runs_elsewhere}
    found = available()
    if not found.servable:
        return {**row, "servable": False, "reason": found.reason, "fix": found.fix}
    needed = need()
    if handle.state is not ModelState.LOADED and baseline_mb + needed.fresh_mb > limit_mb:
        return {**row, "servable": False, "need_mb": round(needed.fresh_mb),
                "reason": f"needs about {needed.fresh_mb:.0f} MB ({needed.source}) but at most "
                          f"{max(0.0, limit_mb - baseline_mb):.0f} MB of the {budget_mb:.0f} MB "
                          f"budget is ever free (the service holds {baseline_mb:.0f} MB with nothing loaded)",
                "fix": "BACKEND=onnx, a larger MEMORY_BUDGET_MB, or fewer WORKERS"}
    return {**row, "servable": True, "source": found.source, "need_mb": round(needed.fresh_mb)}


def log_rows(rows: list[dict[str, Any]]) -> None:
    """One line per readiness row: servable now, or why not and the one command that makes it so."""
    for row in rows:
        if row["servable"]:
            logger.info("model %s: servable (%s, about %s MB)", row["name"], row.get("source") or "loaded",
                        row.get("need_mb"))
        elif row["enabled"]:
            logger.warning("model %s: NOT servable: %s; to fix: %s", row["name"], row["reason"], row["fix"])
        else:
            logger.info("model %s: disabled by configuration", row["name"])


def snapshot_row(handle: ModelHandle, found: Availability, need: Need) -> dict[str, Any]:
    """One model of the snapshot: its state, whether it can be served, its cost and where that figure comes from.

    Call with the handles' lock held, so its counts agree with each other.
    """
    e = handle
    row: dict[str, Any] = {
        "name": e.spec.name, "state": e.state.value, "description": e.spec.description,
        "pinned": e.spec.pinned, "servable": found.servable,
        "source": found.source or None, "reason": found.reason or None,
        "fix": found.fix or None,
        "cost_mb": round(need.mb, 1), "cost_source": need.source,
        "cost": {"model_mb": round(need.model_mb, 1), "imports_mb": round(need.imports_mb, 1),
                 "source": need.source,
                 "estimate": {"weights_mb": round(need.estimate.weights_mb, 1),
                              "allowance_mb": round(need.estimate.allowance_mb, 1),
                              "imports_mb": round(need.estimate.imports_mb, 1),
                              "total_mb": round(need.estimate.model_mb + need.estimate.imports_mb, 1)},
                 "measured": _measured_row(need.measured),
                 # a request's activations by its size: what admission used for the last request, what it made
                 # room for since the build, and the figure for each size measured (backend.registry.request_cost)
                 "request": {"unit": e.spec.size_unit or None, "last": _request_row(e.last_request),
                             "admitted": _request_row(e.admitted),
                             "by_size": [_request_row(c) for c in envelope(
                                 need.measured.samples if need.measured else [], need.estimate.allowance_mb,
                                 e.spec.size_unit, unknown=e.spec.size_cap is None)]}},
        "estimate_mb": round(need.estimate.model_mb + need.estimate.imports_mb, 1),
        "measured_mb": _round(e.measured_mb), "anon_mb": _round(e.anon_mb),
        "imports_mb": _round(e.imports_mb), "peak_load_mb": _round(e.peak_load_mb),
        "first_use_mb": _round(e.first_use_mb), "request_peak_mb": _round(e.request_peak_mb),
        "load_s": _round(e.load_s, 3),
        "loaded_at": e.loaded_at, "last_used": e.last_used, "use_count": e.uses,
        "in_use": e.in_use, "loads": e.loads, "last_error": e.last_error,
        "request_mb": _round(e.last_request.mb) if e.last_request else None,
        "request_size": e.last_request.size if e.last_request else None,
        "request_rule": e.last_request.rule if e.last_request else None,
    }
    if e.pipeline is not None:
        row.update(e.pipeline.describe())
    return row


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _measured_row(measured: MeasuredCost | None) -> dict[str, Any] | None:
    if measured is None:
        return None
    return {"measured_mb": _round(measured.measured_mb), "peak_load_mb": _round(measured.peak_load_mb),
            "first_use_mb": _round(measured.first_use_mb), "request_peak_mb": _round(measured.request_peak_mb),
            "requests_measured": len(measured.request_peaks), "pid": measured.pid, "at": measured.at}


def _request_row(cost: RequestCost | None) -> dict[str, Any] | None:
    if cost is None:
        return None
    return {"size": cost.size, "mb": _round(cost.mb), "rule": cost.rule}
