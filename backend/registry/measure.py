"""Meter: measures each build and each request, and keeps a figure only when it is the model's own.

RSS and its peak are the process's, so a figure is kept only when nothing else started, was built
or was unloaded in this process while it was measured. The epoch counts those events: it is
bumped when a request starts, a build starts, a model is unloaded or a decode is reserved, and a
figure measured across a bump includes someone else's memory. Kept figures go to the CostBook.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from backend.errors import ApiError, ModelUnavailable
from backend.memory import readings
from backend.registry.costs import CostBook

if TYPE_CHECKING:  # typing only: the registry never imports a pipeline
    from backend.pipelines.base import Pipeline
    from backend.registry.lifecycle import ModelHandle

logger = logging.getLogger(__name__)


class Meter:
    """The epoch, the requests running now, and the build and request measurements."""

    def __init__(self, costs: CostBook) -> None:
        self.costs = costs
        self._lock = threading.Lock()
        self._epoch = 0
        self._running = 0  # requests holding a model slot (running, not queued), over every model

    def bump(self) -> int:
        """Something starts that changes this process's memory; the new epoch."""
        with self._lock:
            self._epoch += 1
            return self._epoch

    # --- requests --------------------------------------------------------------------------------
    def start_request(self, building: Callable[[], bool]) -> tuple[int, float | None]:
        """Count the request as running; (its epoch, RSS now if it runs alone and the peak-RSS mark was reset).

        Requests queued for a model's slot hold no activations, so only running ones count: under
        steady load the first request of a queue is still measured. `building`: whether a build is
        measuring its own peak now.
        """
        with self._lock:
            self._running += 1
            alone = self._running == 1
            self._epoch += 1
            epoch = self._epoch
        if not alone or building():
            return epoch, None
        if not readings.reset_peak_rss():
            return epoch, None  # the mark would be the process's all-time high, not this request's
        return epoch, readings.rss_mb()

    def finish_request(self, handle: ModelHandle, epoch: int, start_rss_mb: float | None, *,
                       size: float | None = None, ran: bool = True) -> bool:
        """Measure the request of `size` that started at `epoch` (call with its slot still held); True if a
        figure was kept. `ran` False: it ended before the model ran (refused, or invalid): nothing to measure."""
        with self._lock:
            # nothing else started, was built or unloaded since
            undisturbed = ran and self._epoch == epoch
        request_peak = None
        if start_rss_mb is not None and undisturbed:
            peak = readings.peak_rss_mb()
            if peak is not None:
                request_peak = max(0.0, peak - start_rss_mb)
        first_use_mb = None
        if undisturbed and handle.load_epoch == epoch - 1:
            # The first request after each build (not only the process's first), with nothing else
            # in between: a model rebuilt after an eviction is measured again, against the RSS
            # before that build. Inference grows memory past what loading did (arenas, caches).
            first_use_mb = handle.first_use_mb = max(0.0, readings.rss_mb() - handle.rss_before_load_mb)
        with self._lock:
            self._running -= 1
            if request_peak is not None:
                handle.request_peak_mb = max(handle.request_peak_mb or 0.0, request_peak)
        if request_peak is None and first_use_mb is None:
            return False
        self.costs.record(handle.key or handle.cost_key(), request_peak_mb=request_peak, request_size=size,
                          first_use_mb=first_use_mb)
        return True

    # --- builds ----------------------------------------------------------------------------------
    def build(self, handle: ModelHandle) -> tuple[Pipeline, float, float]:
        """Import the runtime, build and load the pipeline, measure it; (pipeline, RSS before, RSS after).

        The runtime is imported first and measured on its own, so the build's figures are the model's.
        """
        name = handle.spec.name
        with self._lock:
            self._epoch += 1
            build_epoch, quiet = self._epoch, self._running == 0
        before_import = readings.rss_mb()
        if handle.spec.import_runtime is not None:
            try:
                handle.spec.import_runtime()
            except ImportError as exc:
                raise ModelUnavailable(f"model {name!r} cannot be served: its runtime does not import ({exc})",
                                       model=name) from exc
        before_rss, before_anon = readings.rss_mb(), readings.anon_mb()
        peak_reset = readings.reset_peak_rss()
        started = time.perf_counter()
        pipeline = handle.spec.factory()
        try:
            pipeline.load()
        except ApiError:
            pipeline.close()
            readings.release_memory()
            raise
        except Exception as exc:
            pipeline.close()
            readings.release_memory()
            logger.exception("model %s failed to build", name)
            raise ModelUnavailable(f"model {name!r} failed to load: {exc}", model=name) from exc
        load_s = time.perf_counter() - started
        peak = readings.peak_rss_mb() if peak_reset else None
        readings.release_memory()  # drop load-time transients before measuring steady cost
        after_rss, after_anon = readings.rss_mb(), readings.anon_mb()
        handle.imports_mb = max(0.0, before_rss - before_import)
        handle.rss_before_load_mb = before_rss
        handle.measured_mb = max(0.0, after_rss - before_rss)
        handle.anon_mb = max(0.0, after_anon - before_anon)
        handle.peak_load_mb = max(0.0, (peak or after_rss) - before_rss)
        handle.first_use_mb = None
        with self._lock:  # a request ran or anything else started meanwhile: the figures are not its own
            undisturbed = quiet and self._epoch == build_epoch
        handle.load_epoch = build_epoch if undisturbed else -1
        handle.load_s = load_s
        if undisturbed:
            self.costs.record(handle.key, measured_mb=handle.measured_mb, peak_load_mb=handle.peak_load_mb)
        return pipeline, before_rss, after_rss
