"""Limits on what the service takes on: rate limits per client, and the queue's wait sized to the CPU.

Rate limits (flask-limiter): one shared budget per API key, else per client IP, on every inference and admin route.

The limit (RATE_LIMIT) is attached once per blueprint, from its auth policy (backend.auth), so a
new blueprint is limited as soon as it declares Policy.INFERENCE or Policy.ADMIN. Counters live
in memory (per worker) unless REDIS_URL names a Redis, then they are shared by every worker and
instance; if that Redis cannot be reached the workers count in memory until it is back.

The client IP is the socket's peer unless TRUSTED_PROXIES proxies are in front: then Werkzeug's
ProxyFix takes it that many hops from the right of X-Forwarded-For (a client cannot forge a hop
a trusted proxy appended). A breach is 429 rate_limited with Retry-After.

The queue's wait (QUEUE_TIMEOUT_S, unset): a request waiting to be admitted to a busy model waits
for the requests ahead of it. At most TTS_ADMITTED (or MODEL_CONCURRENCY) are admitted and MAX_QUEUE
wait, so the last one queued waits for about that many requests; each is counted as one short
sentence (TYPICAL_REQUEST_CPU_S, measured), at the speed the CPU quota allows (one inference thread
runs at most one CPU's worth). At 0.1 CPU (Render's free plan) that is (4 + 3) x 2.6 / 0.1 = 182 s,
so a request that would be served within two minutes is not refused; at 0.5 CPU 37 s; from 1 CPU
the floor, 30 s.
"""
from __future__ import annotations

import hashlib
import math
import time
from typing import TYPE_CHECKING

from flask import Flask, request
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit
from werkzeug.exceptions import TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

from backend.auth import Policy, blueprint_policy, caller_key

if TYPE_CHECKING:
    from config import Settings

LIMITED_POLICIES = (Policy.INFERENCE, Policy.ADMIN)
# One short sentence ("The kettle is on, come and sit down.", two pieces) at one inference thread, CPU-s:
# 2.59 in BENCHMARKS' "First audio" table (issue 23), 2.5 at the issue's start.
TYPICAL_REQUEST_CPU_S = 2.6
MIN_QUEUE_TIMEOUT_S = 30


def queue_timeout_for(cpus: float, ahead: int) -> int:
    """Seconds a queued request may wait: `ahead` typical requests served at the speed of `cpus`, at least 30."""
    speed = min(1.0, max(cpus, 0.01))  # one inference thread's model runs use at most one CPU
    return max(MIN_QUEUE_TIMEOUT_S, math.ceil(ahead * TYPICAL_REQUEST_CPU_S / speed))


def queue_timeout_s(settings: Settings, cpus: float | None = None) -> float:
    """QUEUE_TIMEOUT_S, or when unset queue_timeout_for the CPU quota (`cpus`, read once when None) and the
    requests that may be ahead of the last one queued: the most admitted to a model, and MAX_QUEUE."""
    if settings.queue_timeout_s is not None:
        return float(settings.queue_timeout_s)
    if cpus is None:
        from backend.cpu_quota import cpu_quota
        cpus = cpu_quota().cpus
    admitted = max(settings.tts_admitted, settings.model_concurrency)
    return float(queue_timeout_for(cpus, admitted + settings.max_queue))


def is_rate_limited(policy: Policy) -> bool:
    """Whether routes under `policy` count against RATE_LIMIT (when one is set)."""
    from flask import current_app
    return policy in LIMITED_POLICIES and bool(current_app.config["SETTINGS"].rate_limit)


def client_identity() -> str:
    """Whom a request counts against: its API key (hashed: keys never reach the counters' storage), else its IP."""
    key = caller_key()
    if key is not None:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return "ip:" + (request.remote_addr or "unknown")


class Breach(RateLimitExceeded):
    """A breached limit with the seconds until it resets (backend.errors sends them as Retry-After)."""

    def __init__(self, description: str, retry_after_s: int) -> None:
        TooManyRequests.__init__(self, description=description)  # flask-limiter's own __init__ wants its RuntimeLimit
        self.retry_after_s = retry_after_s


def _breached(limit: RequestLimit) -> None:
    # Raised as flask-limiter's own exception type: anything else it would take for a storage failure.
    retry_after = max(1, math.ceil(limit.reset_at - time.time()))
    raise Breach(f"rate limit {limit.limit} exceeded for this {'API key' if caller_key() else 'client'}; "
                 f"retry in {retry_after} s", retry_after)


def init_app(app: Flask) -> Limiter | None:
    """Trust TRUSTED_PROXIES hops of X-Forwarded-For, and limit every blueprint whose policy is limited."""
    settings = app.config["SETTINGS"]
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    if not settings.rate_limit:
        return None
    limiter = Limiter(client_identity, app=app, storage_uri=settings.redis_url or "memory://",
                      strategy="moving-window", in_memory_fallback_enabled=True,
                      on_breach=_breached, key_prefix="speech-api")
    shared = limiter.shared_limit(settings.rate_limit, scope="api")
    for blueprint in app.blueprints.values():
        if blueprint_policy(blueprint) in LIMITED_POLICIES:
            shared(blueprint)
    return limiter
