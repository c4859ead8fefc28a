"""Background warm-up: right after a worker boots, build the models most first requests need (WARM_MODELS).

On Render's free plan most first requests meet a cold start, and building the TTS model there
costs tens of seconds of wall time (0.1 CPU): begun at boot, it is done or under way when the
first request comes. It never holds /health (a thread of its own) and runs at the lowest CPU
priority, so requests that arrive meanwhile take the CPU first; a request for a model being
warmed joins its build instead of starting another (the registry's single flight). Warmed models
are not pinned: TTL and eviction apply to them as to any other.

It goes through the registry's public API only: `readiness()` says whether a model is servable
and what it needs, `budget_status()` what is in use, `load()` admits and builds it.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from backend.errors import ApiError

logger = logging.getLogger(__name__)

LOWEST_PRIORITY = 19  # nice value of the warm-up thread (Linux: per thread)


def plan_warm_up(names: list[str], readiness: list[dict], used_mb: float, limit_mb: float) -> list[tuple[str, str]]:
    """(model, verdict) for each name: "warm" when it is servable, not loaded and fits beside what is in use now.

    Models are taken in order and each one warmed counts against the next.
    """
    rows = {row["name"]: row for row in readiness}
    plan = []
    for name in names:
        row = rows.get(name)
        if row is None or not row.get("enabled"):
            plan.append((name, "skipped: disabled"))
        elif not row.get("servable"):
            plan.append((name, f"skipped: not servable ({row.get('reason')})"))
        elif row.get("state") == "loaded":
            plan.append((name, "skipped: already loaded"))
        elif used_mb + (row.get("need_mb") or 0) > limit_mb:
            plan.append((name, f"skipped: needs about {row.get('need_mb')} MB, {max(0.0, limit_mb - used_mb):.0f} MB free"))
        else:
            used_mb += row.get("need_mb") or 0
            plan.append((name, "warm"))
    return plan


def warm_up(registry, names: list[str]) -> None:
    """Build each of `names` that the budget allows, one after the other; failures are logged, never raised."""
    status = registry.budget_status()
    limit_mb = registry.effective_budget_mb - registry.margin_mb
    for name, verdict in plan_warm_up(names, registry.readiness(), status["used_mb"], limit_mb):
        if verdict != "warm":
            logger.info("warm-up %s: %s", name, verdict)
            continue
        start, cpu_start = time.monotonic(), time.thread_time()
        try:
            registry.load(name)
        except ApiError as exc:
            logger.warning("warm-up %s: not built: %s", name, exc.message)
            continue
        except Exception:  # a warm-up must never take the worker down; the first request will say why
            logger.exception("warm-up %s failed", name)
            continue
        logger.info("warm-up %s: built in %.1f s (%.2f CPU-s in this thread)", name, time.monotonic() - start,
                    time.thread_time() - cpu_start)


def _warm_up_politely(registry, names: list[str]) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
    except (AttributeError, OSError):  # not Linux: the thread keeps the worker's priority
        pass
    warm_up(registry, names)


def start_warm_up(registry, names: list[str]) -> threading.Thread | None:
    """Warm `names` in a daemon thread of this worker; None when there is nothing to warm."""
    if not names:
        return None
    thread = threading.Thread(target=_warm_up_politely, args=(registry, list(names)), name="warm-up", daemon=True)
    thread.start()
    return thread
