"""Protocol faults under real Gunicorn: malformed chunked bodies, keep-alive after a 413, keys in the URL.

Every answer is the JSON envelope; the worker survives; a refusal that leaves a body unread says
`Connection: close`, so a keep-alive client (requests.Session) never loses its next request.
"""
from __future__ import annotations

import json
import socket

import pytest
import requests

ROUTE = "/api/tts"  # reads a JSON body through backend.api.openapi.read_json
HANG_S = 30  # only a hang reaches it


def _raw(server, payload: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes after it), split status, headers, body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=HANG_S) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return int(lines[0].split()[1]), headers, body


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, body = out + rest[:n], rest[n + 2:]
    return out


def _chunked_post(chunks: bytes) -> bytes:
    return (f"POST {ROUTE} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks


@pytest.fixture(scope="module")
def server(request):
    from tests.conftest import LiveServer, free_port

    live = LiveServer({"API_KEYS": "sekrit-inference-key", "MAX_JSON_KB": "64"}, free_port())
    request.addfinalizer(live.stop)
    live.wait_ready()
    return live


AUTH = {"x-api-key": "sekrit-inference-key"}


@pytest.mark.parametrize("chunks", [
    b"zz\r\n{}\r\n0\r\n\r\n",                      # a chunk size that is not hexadecimal
    b"2\r\n{}XX0\r\n\r\n",                          # a chunk without its CRLF
    b"2\r\n{}\r\n0\r\nX-Trailer: a\x01b\r\n\r\n",  # a trailer with a control byte
], ids=["size-zz", "no-crlf", "trailer-control-byte"])
def test_a_malformed_chunked_body_is_a_400_json_error_and_the_connection_closes(server, chunks) -> None:
    payload = _chunked_post(chunks).replace(b"\r\n\r\n", f"\r\nx-api-key: {AUTH['x-api-key']}\r\n\r\n".encode(), 1)
    status, headers, body = _raw(server, payload)
    assert status == 400, body
    error = json.loads(body)["error"]
    assert error["code"] == "malformed_request" and "malformed" in error["message"]
    assert "0x" not in error["message"] and "b'" not in error["message"]  # no Python reprs
    assert headers.get("connection") == "close"
    assert requests.get(server.url + "/health", timeout=HANG_S).status_code == 200  # the worker survived
    assert "Traceback" not in server.output()


@pytest.mark.parametrize("size_kb", [80, 3 * 1024], ids=["past-the-json-limit", "past-the-server-drain"])
def test_a_keep_alive_client_keeps_its_next_request_after_a_413(server, size_kb) -> None:
    with requests.Session() as session:
        body = json.dumps({"input": "x" * (size_kb * 1024), "voice": "af_heart"})
        refused = session.post(server.url + ROUTE, data=body, headers={**AUTH, "Content-Type": "application/json"},
                               timeout=HANG_S)
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "payload_too_large"
        assert "MAX_JSON_KB" in refused.json()["error"]["message"]
        assert refused.headers.get("Connection") == "close"
        for _ in range(3):  # the same session, so the same pool: the closed connection is not reused
            assert session.get(server.url + "/health", timeout=HANG_S).status_code == 200


def test_a_refusal_of_a_small_body_keeps_the_connection(server) -> None:
    with requests.Session() as session:
        refused = session.post(server.url + ROUTE, json={"input": ""}, timeout=HANG_S)  # no key: 401
        assert refused.status_code == 401
        assert refused.headers.get("Connection") == "keep-alive"
        assert session.get(server.url + "/health", timeout=HANG_S).status_code == 200


def test_a_key_in_the_query_string_is_refused_and_masked_in_the_access_log(server) -> None:
    response = requests.get(server.url + "/api/models?api_key=sekrit-inference-key&x=1&token=t0ps3cret",
                            timeout=HANG_S)
    assert response.status_code == 401
    assert "only in headers" in response.json()["error"]["message"]
    assert requests.get(server.url + "/api/models", headers=AUTH, timeout=HANG_S).status_code == 200
    log = server.output()
    assert "sekrit-inference-key" not in log and "t0ps3cret" not in log
    assert "/api/models?api_key=***&x=1&token=***" in log
