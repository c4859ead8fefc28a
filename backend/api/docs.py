"""The API document: /openapi.json (generated from the routes' models) and /docs, Swagger UI from local files (no CDN)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, send_from_directory

from backend.api.openapi import Binary, document, endpoint
from backend.api.schemas.common import ErrorEnvelope, OpenObject
from backend.auth import Policy, protect
from backend.limits import is_rate_limited

bp = protect(Blueprint("docs", __name__), Policy.OPEN)

TITLE = "Speech API"
VERSION = "1"
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Speech API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-init.js"></script>
</body></html>
"""
_INIT = 'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});\n'


@bp.get("/openapi.json")
@endpoint(responses={200: OpenObject})
def openapi():
    """This document: every route, its request and response models, its auth and its errors."""
    if "OPENAPI" not in current_app.extensions:  # the routes do not change once the app serves
        current_app.extensions["OPENAPI"] = document(current_app, title=TITLE, version=VERSION,
                                                     error_model=ErrorEnvelope, rate_limited=is_rate_limited)
    return jsonify(current_app.extensions["OPENAPI"])


@bp.get("/docs")
@endpoint(responses={200: Binary(("text/html",), "Swagger UI page")})
def docs_page():
    """Swagger UI for this document, served from the swagger-ui-bundle package."""
    return Response(_PAGE, mimetype="text/html")


@bp.get("/docs/swagger-init.js")
@endpoint(responses={200: Binary(("text/javascript",), "the page's start-up script")})
def docs_init():
    """Start Swagger UI on /openapi.json."""
    return Response(_INIT, mimetype="text/javascript")


@bp.get("/docs/swagger-ui.css")
@endpoint(responses={200: Binary(("text/css",), "Swagger UI's stylesheet")})
def docs_css():
    """Swagger UI's stylesheet, from the installed package."""
    return _asset("swagger-ui.css")


@bp.get("/docs/swagger-ui-bundle.js")
@endpoint(responses={200: Binary(("text/javascript",), "Swagger UI's script")})
def docs_js():
    """Swagger UI's script, from the installed package."""
    return _asset("swagger-ui-bundle.js")


def _asset(name: str) -> Response:
    from swagger_ui_bundle import swagger_ui_path  # imported on use: the package is only files
    return send_from_directory(str(swagger_ui_path), name, max_age=86400)
