"""API keys, applied once per blueprint: `protect(bp, Policy.INFERENCE)` and every route in it is covered.

    Policy.OPEN       anyone (/health, the API document and its page)
    Policy.INFERENCE  with API_KEYS set, an inference or an admin key; with API_KEYS empty, anyone
    Policy.ADMIN      an ADMIN_API_KEYS key; with ADMIN_API_KEYS empty, nobody (403)
    Policy.OPS        /ready and /metrics: anyone, unless PROTECT_METRICS=true, then as INFERENCE
                      (with no keys configured at all, PROTECT_METRICS refuses everyone)

A key travels in `x-api-key: KEY` or `Authorization: Bearer KEY` (what the openai client sends),
never in the URL: a key in the query string is refused (401 saying where it goes), and the access
log masks any `*key`/`*token` query value (`mask_query_secrets`, Gunicorn's logger_class).
Keys are compared in constant time and never logged: the request log writes the path, not headers.
`check_policies(app)` refuses to start an app with a route whose blueprint declares no policy.
"""
from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Iterable

from flask import Blueprint, Flask, current_app, request

from backend.errors import Forbidden, Unauthorized

POLICY_ATTR = "auth_policy"
# Query parameters that look like secrets: api_key, key, apikey, token, access_token, ...
_SECRET_QUERY = re.compile(r"(?i)([?&;][\w.\-]*(?:key|token)=)[^&;#\s]*")
MASK = "***"


def mask_query_secrets(text: str) -> str:
    """`text` (a URL or request line) with every key/token query value replaced by ***."""
    return _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, text)


def key_in_query() -> bool:
    return _SECRET_QUERY.search("?" + request.query_string.decode("latin-1")) is not None


class Policy(enum.Enum):
    OPEN = "open"
    INFERENCE = "inference"
    ADMIN = "admin"
    OPS = "ops"


def protect(blueprint: Blueprint, policy: Policy) -> Blueprint:
    """Declare who may call every route of `blueprint`; checked before any of its views runs."""
    setattr(blueprint, POLICY_ATTR, policy)
    if policy is not Policy.OPEN:
        blueprint.before_request(lambda: require(policy))
    return blueprint


def blueprint_policy(blueprint: Blueprint | None) -> Policy | None:
    return getattr(blueprint, POLICY_ATTR, None)


def policy_of(app: Flask, endpoint: str) -> Policy | None:
    """The policy covering an endpoint, from its blueprint; None = none declared (a bug)."""
    if endpoint == "static":
        return Policy.OPEN  # Flask's own static files, when the app has a static folder
    return blueprint_policy(app.blueprints.get(endpoint.rpartition(".")[0]) if "." in endpoint else None)


def check_policies(app: Flask) -> None:
    """Raise at start-up if any route is not covered by a blueprint's policy."""
    missing = sorted(rule.rule for rule in app.url_map.iter_rules() if policy_of(app, rule.endpoint) is None)
    if missing:
        raise RuntimeError(f"routes without an auth policy (declare one with backend.auth.protect): {', '.join(missing)}")


def presented_key() -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def caller_key() -> str | None:
    """The presented key when it is a configured one (inference or admin), else None: rate limits count per key."""
    settings = current_app.config["SETTINGS"]
    key = presented_key()
    if key is not None and _matches(key, [*settings.api_keys, *settings.admin_api_keys]):
        return key
    return None


def is_admin() -> bool:
    key = presented_key()
    return key is not None and _matches(key, current_app.config["SETTINGS"].admin_api_keys)


def require(policy: Policy) -> None:
    """Raise 401/403 unless the request satisfies `policy`."""
    settings = current_app.config["SETTINGS"]
    if policy is Policy.OPEN or (policy is Policy.OPS and not settings.protect_metrics):
        return
    if policy is Policy.ADMIN:
        if not settings.admin_api_keys:
            raise Forbidden("admin endpoints are disabled: set ADMIN_API_KEYS to enable them")
        _require_one_of(settings.admin_api_keys)
        return
    accepted = [*settings.api_keys, *settings.admin_api_keys]
    if policy is Policy.INFERENCE and not settings.api_keys:
        return  # a private deployment: inference open until API_KEYS is set
    if not accepted:
        raise Forbidden("PROTECT_METRICS=true but no API_KEYS or ADMIN_API_KEYS are set: nobody can be let in")
    _require_one_of(accepted)


def _require_one_of(keys: Iterable[str]) -> None:
    key = presented_key()
    if key is None and key_in_query():
        raise Unauthorized("API keys are accepted only in headers, never in the URL (it is logged and cached): "
                           "send it in the x-api-key header or as Authorization: Bearer")
    if key is None:
        raise Unauthorized("missing API key: send it in the x-api-key header or as Authorization: Bearer")
    if not _matches(key, keys):
        raise Unauthorized("invalid API key")


def _matches(key: str, keys: Iterable[str]) -> bool:
    presented = key.encode("utf-8", "surrogatepass")
    # Every configured key is compared (no early exit), each in constant time.
    return sum(hmac.compare_digest(presented, k.encode()) for k in keys) > 0
