"""One schema layer: the pydantic models a view declares validate its requests and generate /openapi.json.

    @bp.post("/api/tts")
    @endpoint(body=ApiTtsBody, responses={200: AUDIO, 503: ErrorEnvelope})
    def api_tts(body: ApiTtsBody): ...

`endpoint()` validates before the view runs and passes what it validated as keyword arguments:
`body` (a JSON object body), `form` (multipart form fields), `query` (the query string). A JSON
body is read within its size limit, parsed with a depth limit and checked for lone surrogates
(`read_json`), so malformed input is a 400, never a RecursionError or an encoder's 500. Every
schema failure is one shape: 400 `invalid_request` naming the first field, with all of them.

`document(app)` walks the app's URL map and builds the OpenAPI 3.1 document from the same
models (pydantic's JSON schema), each route's auth policy (backend.auth) and the errors every
route can give (401/403 by policy, 400/413/415 with a body, 429 when rate-limited).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Flask, current_app, request
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.exceptions import RequestEntityTooLarge

from backend.auth import Policy, policy_of
from backend.api.schemas.common import validate
from backend.errors import InvalidJson, PayloadTooLarge, UnsupportedMediaType

ENDPOINT_ATTR = "__endpoint__"
JSON = "application/json"
FORM = "multipart/form-data"
METHODS = ("get", "post", "put", "patch", "delete")
_CONVERTER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


@dataclass(frozen=True)
class Binary:
    """A response (or raw request) that is bytes of one of `media_types`, not JSON."""

    media_types: tuple[str, ...]
    description: str = ""


# One status's answer: a description, a JSON model, bytes, or a tuple of models and bytes when the body decides
# (/api/tts answers audio, or JSON when captions are asked for).
Answer = type[BaseModel] | Binary | str | tuple[type[BaseModel] | Binary, ...]


@dataclass(frozen=True)
class Endpoint:
    """What one view accepts and answers, for validation and for the document."""

    summary: str
    description: str
    body: type[BaseModel] | None = None
    form: type[BaseModel] | None = None
    raw: Binary | None = None
    query: type[BaseModel] | None = None
    responses: Mapping[int, Answer] = field(default_factory=dict)
    errors: type[BaseModel] | None = None  # the error envelope, when not the generic one
    large_json: bool = False  # the JSON carries audio: MAX_UPLOAD_MB, not MAX_JSON_KB


def endpoint(*, body: type[BaseModel] | None = None, form: type[BaseModel] | None = None,
             raw: Binary | None = None, query: type[BaseModel] | None = None,
             responses: Mapping[int, Answer] | None = None,
             errors: type[BaseModel] | None = None, large_json: bool = False) -> Callable:
    """Declare a view's request and response models; the view gets `body`, `form`, `query` validated."""
    def decorate(view: Callable) -> Callable:
        doc = (view.__doc__ or view.__name__.replace("_", " ")).strip()
        summary, _, description = doc.partition("\n")
        spec = Endpoint(summary=summary.strip(), description=description.strip(), body=body, form=form, raw=raw,
                        query=query, responses=dict(responses or {200: "OK"}), errors=errors,
                        large_json=large_json)

        @wraps(view)
        def validated(*args: Any, **kwargs: Any) -> Any:
            if query is not None:
                kwargs["query"] = validate(query, request.args.to_dict(), where="query")
            if body is not None or form is not None or raw is not None:
                kwargs.update(_validated_body(spec))
            return view(*args, **kwargs)

        setattr(validated, ENDPOINT_ATTR, spec)
        return validated
    return decorate


def _validated_body(spec: Endpoint) -> dict[str, Any]:
    """The body by its content type: JSON -> `body`, multipart -> `form`, anything else raw (the view reads it)."""
    found: dict[str, Any] = {"body": None} if spec.body is not None else {}
    if spec.form is not None:
        found["form"] = None
    settings = current_app.config["SETTINGS"]
    if spec.body is not None and request.is_json:
        limit = current_app.config["MAX_CONTENT_LENGTH"] if spec.large_json else settings.max_json_kb * 1024
        found["body"] = validate(spec.body, read_json(limit, settings.max_json_depth), where="body")
    elif spec.form is not None and request.mimetype == FORM:
        found["form"] = validate(spec.form, _form_fields(settings.max_form_parts), where="form")
    elif spec.raw is None or request.is_json or request.mimetype == FORM:
        accepted = [JSON] * (spec.body is not None) + [FORM] * (spec.form is not None) + list(spec.raw.media_types
                                                                                         if spec.raw else [])
        raise UnsupportedMediaType(f"expected Content-Type: {' or '.join(accepted)}, got "
                                   f"{request.content_type or 'none'}", accepted=accepted)
    return found


def _form_fields(max_parts: int) -> dict[str, str]:
    """The multipart form's fields; more than MAX_FORM_PARTS parts is a 413 that says so."""
    try:
        return request.form.to_dict()
    except RequestEntityTooLarge:
        limit = current_app.config["MAX_CONTENT_LENGTH"] or 0
        if request.content_length is None:  # chunked: Werkzeug says the same for either limit
            raise PayloadTooLarge(f"the multipart body is larger than {limit // 2**20} MB (MAX_UPLOAD_MB) or has "
                                  f"more than {max_parts} parts (MAX_FORM_PARTS)", limit_parts=max_parts,
                                  limit_mb=limit // 2**20) from None
        if request.content_length > limit:
            raise
        raise PayloadTooLarge(f"the multipart body has more than {max_parts} parts (MAX_FORM_PARTS)",
                              limit_parts=max_parts) from None


def read_body(limit_bytes: int) -> bytes | None:
    """The whole body if it is at most `limit_bytes`, else None (the caller's 413).

    A chunked body has no Content-Length, and Werkzeug's stream then stops at MAX_CONTENT_LENGTH
    without a word: such a body is read from the server's own input, one byte past the limit.
    """
    if (request.content_length or 0) > limit_bytes:
        return None
    if request.content_length is None and request.environ.get("wsgi.input_terminated"):
        data = request.environ["wsgi.input"].read(limit_bytes + 1)
    else:
        data = request.stream.read(limit_bytes + 1)
    return data if len(data) <= limit_bytes else None


def read_json(limit_bytes: int, max_depth: int) -> Any:
    """The request's JSON within `limit_bytes` and `max_depth`; 413 or 400 invalid_json otherwise."""
    data = read_body(limit_bytes)
    if data is None:
        raise _json_too_large(limit_bytes)
    try:
        value = json.loads(data)
    except RecursionError:
        raise InvalidJson(f"the JSON body is nested more than {max_depth} levels deep") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidJson(f"the request body is not valid JSON: {exc}") from None
    check_json_value(value, max_depth)
    return value


def check_json_value(value: Any, max_depth: int) -> None:
    """Raise InvalidJson for nesting deeper than `max_depth` or a string no encoder can write (a lone surrogate)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise InvalidJson(f"the JSON body is nested more than {max_depth} levels deep")
            children = list(item.items()) if isinstance(item, dict) else [(None, v) for v in item]
            for key, child in children:
                if key is not None:
                    _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidJson(f"the JSON body holds an unpaired surrogate ({text[exc.start]!r} at character "
                          f"{exc.start} of a string): it is not text") from None


def _json_too_large(limit_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the JSON body is larger than its {limit_bytes // 1024} KB limit (MAX_JSON_KB, or "
                           "MAX_UPLOAD_MB where it carries audio)", limit_kb=limit_bytes // 1024)


# --- the document ----------------------------------------------------------------------------------
def document(app: Flask, *, title: str, version: str, error_model: type[BaseModel],
             rate_limited: Callable[[Policy], bool]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route in `app`, from the models its views declare."""
    operations: list[tuple[str, str, Endpoint | None, Policy | None, list[dict[str, Any]]]] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        spec = getattr(app.view_functions[rule.endpoint], ENDPOINT_ATTR, None)
        path, params = _openapi_path(rule.rule)
        for method in sorted(m.lower() for m in (rule.methods or ()) if m.lower() in METHODS):
            operations.append((path, method, spec, policy_of(app, rule.endpoint), params))

    models = {error_model}
    for _, _, spec, _, _ in operations:
        if spec is not None:
            models.update(m for m in (spec.body, spec.form, spec.query, spec.errors) if m is not None)
            for answer in spec.responses.values():
                models.update(m for m in (answer if isinstance(answer, tuple) else (answer,)) if isinstance(m, type))
    keyed, defs = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                     ref_template="#/components/schemas/{model}")
    schema_of = {model: ref for (model, _), ref in keyed.items()}

    paths: dict[str, dict[str, Any]] = {}
    for path, method, spec, policy, params in operations:
        paths.setdefault(path, {})[method] = _operation(spec, policy, params, schema_of, error_model,
                                                        rate_limited(policy) if policy else False)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                                "Bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for converter, name in _CONVERTER.findall(rule):
        kind = {"int": "integer", "float": "number"}.get(converter, "string")
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": kind}})
    return _CONVERTER.sub(lambda m: "{" + m.group(2) + "}", rule), params


def _operation(spec: Endpoint | None, policy: Policy | None, path_params: list[dict[str, Any]],
               schema_of: dict, error_model: type[BaseModel], rate_limited: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": spec.summary if spec else "", "parameters": list(path_params)}
    if spec is not None and spec.description:
        operation["description"] = spec.description
    responses: dict[str, Any] = {}
    if spec is not None:
        for status, answer in spec.responses.items():
            responses[str(status)] = _response(answer, schema_of, status)
    else:
        responses["200"] = {"description": "OK"}
    error_ref = schema_of[spec.errors if spec is not None and spec.errors else error_model]

    def error(status: int, description: str, retry_after: bool = False) -> None:
        if str(status) not in responses:
            answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": error_ref}}}
            if retry_after:
                answer["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                     "description": "seconds to wait before retrying"}}
            responses[str(status)] = answer

    if spec is not None and spec.query is not None:
        operation["parameters"] += _query_parameters(spec.query)
    if spec is not None and (spec.body or spec.form or spec.raw):
        content: dict[str, Any] = {}
        if spec.body is not None:
            content[JSON] = {"schema": schema_of[spec.body]}
        if spec.form is not None:
            content[FORM] = {"schema": schema_of[spec.form]}
        for media in spec.raw.media_types if spec.raw else ():
            content[media] = {"schema": {"type": "string", "format": "binary"}}
        operation["requestBody"] = {"required": True, "content": content}
        error(413, "The body is larger than its limit (MAX_UPLOAD_MB, MAX_JSON_KB)")
        error(415, "The Content-Type is not one this route accepts")
    if spec is not None and (spec.body or spec.form or spec.raw or spec.query):
        error(400, "The request breaks its schema (`field` names the first offending field) or is not valid JSON")
    if path_params:
        error(404, "No such resource")
    if policy in (Policy.INFERENCE, Policy.ADMIN, Policy.OPS):
        operation["security"] = [{"ApiKey": []}, {"Bearer": []}] + ([{}] if policy is not Policy.ADMIN else [])
        error(401, "Missing or invalid API key")
        error(403, "Refused: no key of the needed kind is configured")
    if rate_limited:
        error(429, "Too many requests from this key or client; retry after Retry-After seconds", retry_after=True)
    # Gunicorn refuses these before the app sees the request (gunicorn_config.py's limit_request_*), in HTML.
    responses.setdefault("414", {"description": "Request line longer than Gunicorn's limit_request_line",
                                 "content": {"text/html": {"schema": {"type": "string"}}}})
    responses.setdefault("431", {"description": "Too many or too large headers (limit_request_fields/_field_size)",
                                 "content": {"text/html": {"schema": {"type": "string"}}}})
    return {**operation, "responses": responses}


def _response(answer: Answer, schema_of: dict, status: int) -> dict[str, Any]:
    if isinstance(answer, tuple):  # one content type each, the descriptions joined
        parts = [_response(part, schema_of, status) for part in answer]
        return {**parts[0], "description": "; or ".join(p["description"] for p in parts),
                "content": {media: c for p in parts for media, c in p["content"].items()}}
    if isinstance(answer, str):
        return {"description": answer}
    if isinstance(answer, Binary):
        return {"description": answer.description or "audio",
                "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in answer.media_types}}
    described: dict[str, Any] = {"description": (answer.__doc__ or answer.__name__).strip().splitlines()[0],
                                 "content": {JSON: {"schema": schema_of[answer]}}}
    if status in (429, 503):
        described["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                "description": "seconds to wait before retrying (when it can help)"}}
    return described


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop,
             **({"description": prop["description"]} if "description" in prop else {})}
            for name, prop in schema.get("properties", {}).items()]
