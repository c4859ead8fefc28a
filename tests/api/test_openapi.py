"""One schema layer: the models views declare validate requests and generate /openapi.json; one 400 shape."""
from __future__ import annotations

import io
import re

import pytest

from backend.api.openapi import ENDPOINT_ATTR
from tests.conftest import fake_spec

ADMIN = {"x-api-key": "admin"}


@pytest.fixture
def app(make_app):
    return make_app([fake_spec("fake", 5)], admin_api_keys="admin")


def _operations(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        found |= {(method.lower(), path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def test_the_document_has_every_route_of_the_app(app):
    document = app.test_client().get("/openapi.json").json
    assert document["openapi"].startswith("3.1")
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert documented == _operations(app)


def test_every_view_declares_its_models(app):
    """A route without @endpoint(...) would be in the document with nothing to say about its body or answers."""
    undeclared = [rule.rule for rule in app.url_map.iter_rules()
                  if rule.endpoint != "static" and not hasattr(app.view_functions[rule.endpoint], ENDPOINT_ATTR)]
    assert undeclared == []


def test_bodies_queries_auth_and_errors_are_documented(make_app):
    document = make_app(rate_limit="10/second").test_client().get("/openapi.json").json
    paths, schemas = document["paths"], document["components"]["schemas"]
    analyze = paths["/api/detect-language"]["post"]
    assert set(analyze["requestBody"]["content"]) >= {"application/json", "multipart/form-data",
                                                      "application/octet-stream"}
    assert {p["name"] for p in analyze["parameters"]} == {"top_k", "allowed_languages"}
    assert {"400", "401", "413", "415", "429", "503"} <= set(analyze["responses"])
    assert analyze["security"] and "Retry-After" in analyze["responses"]["429"]["headers"]
    load = paths["/api/models/{name}/load"]["post"]
    assert load["parameters"][0] == {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    assert {} not in load["security"]  # admin: a key is always needed
    assert "security" not in paths["/health"]["get"]
    contract = paths["/api/voice-detection"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert contract == {"$ref": "#/components/schemas/ContractError"}
    assert "ErrorEnvelope" in schemas and "AnalysisJson" in schemas


def test_the_docs_page_loads_only_local_files(app):
    client = app.test_client()
    page = client.get("/docs").get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(src.startswith("/docs/") for src in sources)
    for src in sources:
        with client.get(src) as response:
            assert response.status_code == 200 and len(response.get_data()) > 0, src
    assert "/openapi.json" in client.get("/docs/swagger-init.js").get_data(as_text=True)


@pytest.mark.parametrize("path, body, field", [
    ("/api/detect-language", {"audioBase64": "AAAA", "top_k": "many"}, "top_k"),
    ("/api/detect-language", {"audioBase64": 12}, "audioBase64"),
    ("/api/voice-detection", {"language": "English", "audioFormat": "aiff", "audioBase64": "AAAA"}, "audioFormat"),
])
def test_a_schema_failure_is_one_400_naming_the_field(app, path, body, field):
    response = app.test_client().post(path, json=body)
    assert response.status_code == 400
    if path == "/api/voice-detection":  # its own envelope, the field still named
        assert response.json["status"] == "error" and field in response.json["message"]
        return
    error = response.json["error"]
    assert error["code"] == "invalid_request" and error["field"] == field
    assert error["errors"][0]["field"] == field and field in error["message"]


def test_query_strings_are_validated_too(app):
    error = app.test_client().post("/api/detect-language?top_k=0", data=b"RIFF").json["error"]
    assert error["code"] == "invalid_request" and error["field"] == "top_k" and error["location"] == "query"


# --- regressions from the attack list (issue 12) ------------------------------------------------------
JSON_ROUTES = ["/api/tts", "/v1/audio/speech", "/api/detect-language", "/api/detect-ai-voice", "/api/analyze",
               "/api/voice-detection"]


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_json_nested_10000_deep_is_a_400_not_a_500(app, path):
    response = app.test_client().post(path, data="[" * 10_000 + "]" * 10_000, content_type="application/json")
    assert response.status_code == 400
    if path == "/api/voice-detection":
        assert response.json["status"] == "error" and "nested" in response.json["message"]  # its envelope
    else:
        assert response.json["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_a_lone_surrogate_is_a_400(app, path):
    response = app.test_client().post(path, data='{"text": "Hi \\ud800 there.", "input": "Hi \\ud800 there.", '
                                                 '"language": "\\ud800", "audioBase64": "\\udfff"}',
                                      content_type="application/json")
    assert response.status_code == 400 and "surrogate" in response.get_data(as_text=True)


def test_top_k_1e400_is_a_400(app):
    response = app.test_client().post("/api/detect-language", json=None, data='{"audioBase64": "AAAA", "top_k": 1e400}',
                                      content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["field"] == "top_k"


def test_a_json_body_over_max_json_kb_is_413(make_app):
    client = make_app(max_json_kb=1).test_client()
    response = client.post("/api/tts", json={"text": "a " * 2000})
    assert response.status_code == 413 and "MAX_JSON_KB" in response.json["error"]["message"]


def test_a_chunked_json_body_over_its_limit_is_413_not_cut(make_app):
    """No Content-Length (chunked): read to the limit plus one byte, never silently truncated and parsed."""
    client = make_app(max_json_kb=1).test_client()
    body = io.BytesIO(b'{"text": "' + b"a" * 4096 + b'"}')
    response = client.post("/api/tts", input_stream=body, content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})  # as Gunicorn says of chunked bodies
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"


def test_a_1500_part_multipart_says_parts_not_size(make_app):
    client = make_app(max_form_parts=16).test_client()
    fields = {f"f{i}": "x" for i in range(1500)}
    response = client.post("/api/detect-language", data={**fields, "file": (io.BytesIO(b"RIFF"), "a.wav")})
    assert response.status_code == 413
    message = response.json["error"]["message"]
    assert "parts" in message and "MAX_FORM_PARTS" in message and "MB" not in message


def test_null_options_are_the_defaults(app):
    """Found by schemathesis: `"allowed_languages": null` was a 500 (a length bound applied to None)."""
    response = app.test_client().post("/api/detect-language", json={"top_k": None, "allowed_languages": None,
                                                                    "audioBase64": "0"})
    assert response.status_code == 503 and response.json["error"]["code"] == "model_unavailable"  # validated, then no export


def test_a_chunked_multipart_over_max_upload_mb_is_413_naming_the_limits(make_app):
    """Chunked multipart: Werkzeug gives one 413 for size and for parts, so the message names both limits."""
    body = (b"--b\r\nContent-Disposition: form-data; name=\"top_k\"\r\n\r\n" + b"1" * (2 * 2**20)
            + b"\r\n--b--\r\n")
    client = make_app(max_upload_mb=1).test_client()
    response = client.post("/api/detect-ai-voice", input_stream=io.BytesIO(body),
                           content_type="multipart/form-data; boundary=b", headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413 and "MAX_UPLOAD_MB" in response.json["error"]["message"]
