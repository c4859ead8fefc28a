"""Rate limits (flask-limiter): one shared budget per API key, else per client IP, on every inference and admin route.

The limit (RATE_LIMIT) is attached once per blueprint, from its auth policy (backend.auth), so a
new blueprint is limited as soon as it declares Policy.INFERENCE or Policy.ADMIN. Counters live
in memory (per worker) unless REDIS_URL names a Redis, then they are shared by every worker and
instance; if that Redis cannot be reached the workers count in memory until it is back.

The client IP is the socket's peer unless TRUSTED_PROXIES proxies are in front: then Werkzeug's
ProxyFix takes it that many hops from the right of X-Forwarded-For (a client cannot forge a hop
a trusted proxy appended). A breach is 429 rate_limited with Retry-After.
"""
from __future__ import annotations

import hashlib
import math
import time

from flask import Flask, request
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit
from werkzeug.exceptions import TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

from backend.auth import Policy, blueprint_policy, caller_key

LIMITED_POLICIES = (Policy.INFERENCE, Policy.ADMIN)


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
