"""Typed API errors and the one JSON error envelope.

    ApiError (500 internal_error)
    ├── BadRequest (400 bad_request)
    │   ├── InvalidJson (400 invalid_json)  not JSON, nested too deeply, a lone surrogate
    │   ├── ValidationFailed (400 invalid_request)  a field breaks the request's schema; names it
    │   ├── InvalidAudio (400 invalid_audio)
    │   ├── InvalidImage (400 invalid_image)
    │   ├── UnsupportedFormat (400 unsupported_format)
    │   ├── SpeechTooLong (400 speech_too_long)  the text makes more than MAX_SPEECH_SECONDS of speech
    │   ├── MalformedRequest (400 malformed_request)  the HTTP framing is broken (a bad chunk): closes
    │   └── VoiceNotFound (400 voice_not_found)
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 forbidden)
    ├── NotFound (404 not_found)
    ├── MethodNotAllowed (405 method_not_allowed)
    ├── Conflict (409 conflict)
    │   ├── ModelInUse (409 model_in_use)  unload asked while requests use it
    │   ├── JobNotDone (409 job_not_done)  a job's result asked for before it is done
    │   └── JobFinished (409 job_finished)  cancel asked for a job that already ended
    ├── PayloadTooLarge (413 payload_too_large)
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── UnprocessableEntity (422 unprocessable_entity)
    │   └── NoFaceDetected (422 no_face_detected)  the portrait to animate shows no face
    ├── RateLimited (429 rate_limited)  sends Retry-After
    └── ServiceUnavailable (503 service_unavailable)
        ├── ModelDisabled (503 model_disabled)
        ├── ModelUnavailable (503 model_unavailable)  weights missing or failed to build
        ├── BudgetExceeded (503 memory_budget_exceeded)  cannot fit, sends Retry-After
        ├── ModelBusy (503 model_busy)  queue full or no slot within QUEUE_TIMEOUT_S, sends Retry-After
        └── JobQueueFull (503 job_queue_full)  MAX_QUEUED_JOBS jobs already wait, sends Retry-After

Every error, Werkzeug's 404/405/413 included, leaves as `{"error": {"code", "message", ...}}`;
each class has its own code. `from_http_exception` is the one mapping of Werkzeug's errors, and
`from_protocol_error` of the server's (Gunicorn's ParseException, raised while a view reads a
malformed chunked body). A refusal that may leave a body unread closes the connection
(`CloseAfterRefusal`), so a keep-alive client never sends its next request into a dropped socket.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)

# Gunicorn drains at most this much of a body the app left unread before it reuses a connection
# (gunicorn.http.parser._DRAIN_MAX_BYTES); past it the connection drops after the response.
SERVER_DRAIN_BYTES = 64 * 1024
CLOSE_ENVIRON_KEY = "backend.close_connection"
# What the client sent, per Gunicorn parse error (never its repr of the bytes).
_PROTOCOL_FAULTS = {
    "InvalidChunkSize": "a chunk size that is not a hexadecimal number",
    "ChunkMissingTerminator": "a chunk not followed by CRLF",
    "InvalidHeader": "a trailer line that is not a valid header",
    "InvalidHeaderName": "a trailer with a name a header cannot have",
    "ObsoleteFolding": "a folded trailer line",
    "LimitRequestHeaders": "trailers beyond the header limits",
    "NoMoreData": "a body that ended before its framing said",
}


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class SpeechTooLong(BadRequest):
    code = "speech_too_long"


class MalformedRequest(BadRequest):
    code = "malformed_request"


class InvalidJson(BadRequest):
    code = "invalid_json"


class ValidationFailed(BadRequest):
    """A request broke its schema: `field` names the first offending field, `errors` lists all."""

    code = "invalid_request"


class InvalidAudio(BadRequest):
    code = "invalid_audio"


class InvalidImage(BadRequest):
    code = "invalid_image"


class UnsupportedFormat(BadRequest):
    code = "unsupported_format"


class VoiceNotFound(BadRequest):
    code = "voice_not_found"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class Conflict(ApiError):
    status, code = 409, "conflict"


class ModelInUse(Conflict):
    code = "model_in_use"


class JobNotDone(Conflict):
    code = "job_not_done"


class JobFinished(Conflict):
    code = "job_finished"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class UnprocessableEntity(ApiError):
    status, code = 422, "unprocessable_entity"


class NoFaceDetected(UnprocessableEntity):
    code = "no_face_detected"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


class ModelDisabled(ServiceUnavailable):
    code = "model_disabled"


class ModelUnavailable(ServiceUnavailable):
    code = "model_unavailable"


class BudgetExceeded(ServiceUnavailable):
    code = "memory_budget_exceeded"


class ModelBusy(ServiceUnavailable):
    code = "model_busy"


class JobQueueFull(ServiceUnavailable):
    code = "job_queue_full"


_HTTP_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    409: Conflict, 413: PayloadTooLarge, 415: UnsupportedMediaType, 422: UnprocessableEntity,
    429: RateLimited, 503: ServiceUnavailable,
}


def too_large(limit_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the {limit_bytes // (1024 * 1024)} MB limit (MAX_UPLOAD_MB)",
                           limit_mb=limit_bytes // (1024 * 1024))


def from_http_exception(error: HTTPException, max_content_length: int | None) -> ApiError:
    """Werkzeug's error as the ApiError of the same status (413 with the configured limit)."""
    status = error.code or 500
    if status == 413:
        return too_large(max_content_length or 0)
    api_error = _HTTP_ERRORS.get(status, ApiError)(error.description or error.name)
    api_error.status = status
    if status == 429 and getattr(error, "retry_after_s", None):  # backend.limits.Breach
        api_error.headers["Retry-After"] = str(error.retry_after_s)
        api_error.details["retry_after_s"] = error.retry_after_s
    if status == 405 and getattr(error, "valid_methods", None):
        api_error.headers["Allow"] = ", ".join(error.valid_methods)
    return api_error


def protocol_errors() -> tuple[type[Exception], ...]:
    """The server's parse errors a body read can raise: Gunicorn's, when it is installed."""
    try:
        from gunicorn.http.errors import NoMoreData, ParseException
    except ImportError:
        return ()
    return (ParseException, NoMoreData)


def from_protocol_error(error: Exception) -> MalformedRequest:
    """A 400 naming what was malformed in the request's framing; the connection cannot be reused."""
    what = _PROTOCOL_FAULTS.get(type(error).__name__, "framing the server cannot parse")
    request.environ[CLOSE_ENVIRON_KEY] = True
    return MalformedRequest(f"the request body is malformed: {what}")


def body_may_be_unread(environ: dict[str, Any]) -> bool:
    """A body larger than the server drains, or chunked (its size unknown) — or the app said so."""
    if environ.get(CLOSE_ENVIRON_KEY):
        return True
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        return int(length) > SERVER_DRAIN_BYTES
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


class CloseAfterRefusal:
    """WSGI middleware: an error answer to a request whose body may be unread closes the connection.

    Gunicorn drops such a connection after the response anyway (it drains 64 KB at most) but
    would have said `Connection: keep-alive`, so a client that reuses it loses its next request.
    Gunicorn ignores an application's Connection header: its response object (start_response's
    owner) is asked to close instead; other servers get the header.
    """

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if int(status[:3]) >= 400 and body_may_be_unread(environ):
                server_response = getattr(start_response, "__self__", None)
                if callable(getattr(server_response, "force_close", None)):
                    server_response.force_close()
                else:
                    headers = [(k, v) for k, v in headers if k.lower() != "connection"] + [("Connection", "close")]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)
        return self.wsgi_app(environ, start)


def error_response(error: ApiError):
    response = jsonify(error.to_dict())
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def init_app(app: Flask) -> None:
    """Turn every error into the JSON envelope, never an HTML page."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        if error.status >= 500:
            logger.warning("%s: %s", error.code, error.message)
        return error_response(error)

    @app.before_request
    def _reject_oversize_body() -> None:
        # Werkzeug enforces MAX_CONTENT_LENGTH only when a view reads the body; refuse up front.
        limit = app.config.get("MAX_CONTENT_LENGTH")
        if limit and (request.content_length or 0) > limit:
            raise too_large(limit)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        return error_response(from_http_exception(error, app.config.get("MAX_CONTENT_LENGTH")))

    for protocol_error in protocol_errors():
        app.register_error_handler(protocol_error, lambda error: error_response(from_protocol_error(error)))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        logger.exception("unhandled error")
        return error_response(ApiError("internal server error"))

    app.wsgi_app = CloseAfterRefusal(app.wsgi_app)  # type: ignore[method-assign]
