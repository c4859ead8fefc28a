"""The playground and operator dashboard at `/`: static HTML, CSS and JS served from this package.

No build step and nothing from another origin (no CDN, no external font): the page works offline
and under the strict Content-Security-Policy sent with it. It speaks to the API like any client
(x-api-key from a key field) and polls GET /api/operator for the operator panel.

    static/index.html   the page: Speak, Analyse, Animate (shown once /api/animate exists), Operator
    static/app.js       plain JS, no framework: requests, charts (SVG), streaming playback
    static/style.css    one small stylesheet, readable at 360 px
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

from backend.api.openapi import Binary, endpoint
from backend.auth import Policy, protect

bp = protect(Blueprint("web", __name__), Policy.OPEN)

STATIC = Path(__file__).parent / "static"
# Everything from this origin; media also from the blob: URLs the page makes (MediaSource, recorded
# audio); no inline script or style, no plugins, no framing, forms post nowhere else.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "media-src 'self' blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")


@bp.get("/")
@endpoint(responses={200: Binary(("text/html",), "the playground and operator dashboard")})
def index() -> Response:
    """The playground (speak, analyse, animate) and the operator dashboard."""
    return _file("index.html", "text/html")


@bp.get("/ui/app.js")
@endpoint(responses={200: Binary(("text/javascript",), "the page's script")})
def script() -> Response:
    """The page's script."""
    return _file("app.js", "text/javascript")


@bp.get("/ui/style.css")
@endpoint(responses={200: Binary(("text/css",), "the page's stylesheet")})
def stylesheet() -> Response:
    """The page's stylesheet."""
    return _file("style.css", "text/css")


def _file(name: str, mimetype: str) -> Response:
    # Read whole (a few KB each): no open file is left to the WSGI server to close.
    return Response((STATIC / name).read_bytes(), mimetype=mimetype)


@bp.after_request
def _strict_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
