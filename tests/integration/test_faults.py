"""Faults under real Gunicorn: a worker SIGKILLed mid-request, SIGTERM with a request in flight, busy threads, slow clients.

The app is tests/budget_app.py (the real app, fake-memory models): `POST /fake/tts {"hold_ms"}`
keeps the model in use for a while. Nothing here asserts a latency: each wait is for a state
(a request in flight, a new worker), with a generous deadline that only catches hangs. The
recovery time after a SIGKILL is printed and reported in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

import psutil
import pytest
import requests

APP = "tests.budget_app:create_app()"
HANG_S = 60  # a deadline that only a hang reaches


def _worker_pids(server) -> set[int]:
    return {child.pid for child in psutil.Process(server.proc.pid).children()}


def _wait_for(condition, what: str, timeout_s: float = HANG_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"never happened: {what}")


def _in_use(server) -> int:
    rows = requests.get(server.url + "/api/models", timeout=10).json()["models"]
    return next(row["in_use"] for row in rows if row["name"] == "tts")


def _hold(server, results: list, hold_ms: int = 2000) -> threading.Thread:
    def call() -> None:
        try:
            response = requests.post(server.url + "/fake/tts", json={"hold_ms": hold_ms}, timeout=HANG_S)
            results.append(response.status_code)
        except requests.RequestException as exc:
            results.append(exc)
    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_a_worker_killed_mid_request_is_replaced_and_its_client_gets_a_clean_cut(live_server):
    server = live_server({"FAKE_MODELS_MB": "tts=20"}, app=APP)
    (victim,) = _worker_pids(server)
    results: list = []
    thread = _hold(server, results)
    _wait_for(lambda: _in_use(server) == 1, "the request is running")
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    thread.join(HANG_S)
    assert not thread.is_alive(), "the client hung on a dead worker"
    assert len(results) == 1 and isinstance(results[0], requests.ConnectionError), results  # cut, not a made-up answer

    def answered_by_a_new_worker():
        try:
            return requests.get(server.url + "/health", timeout=2).json()["pid"] not in (victim, None)
        except requests.RequestException:
            return False
    _wait_for(answered_by_a_new_worker, "a replacement worker answers /health")
    print(f"service answered again {time.monotonic() - killed_at:.2f} s after the SIGKILL")
    assert victim not in _worker_pids(server) and len(_worker_pids(server)) == 1
    assert requests.post(server.url + "/fake/tts", json={}, timeout=HANG_S).status_code == 200


def test_sigterm_lets_the_request_in_flight_finish(live_server):
    server = live_server({"FAKE_MODELS_MB": "tts=20", "GRACEFUL_TIMEOUT": "20"}, app=APP)
    results: list = []
    thread = _hold(server, results)
    _wait_for(lambda: _in_use(server) == 1, "the request is running")
    server.proc.send_signal(signal.SIGTERM)
    thread.join(HANG_S)
    assert results == [200]  # finished within GRACEFUL_TIMEOUT, not cut
    assert server.proc.wait(timeout=HANG_S) == 0


def test_health_answers_while_every_model_slot_is_busy_and_two_clients_drip(live_server):
    """1 request runs, MAX_QUEUE wait, the rest get 503 model_busy at once; /health still answers, slow clients too."""
    server = live_server({"FAKE_MODELS_MB": "tts=20", "MAX_QUEUE": "2", "THREADS": "8"}, app=APP)
    drips = []
    for _ in range(2):  # two connections that send their headers one byte at a time
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        drips.append(sock)
    results: list = []
    threads = [_hold(server, results) for _ in range(6)]
    _wait_for(lambda: _in_use(server) >= 3, "one request runs and two wait")
    health = requests.get(server.url + "/health", timeout=HANG_S)
    running = [t for t in threads if t.is_alive()]
    assert health.status_code == 200 and running, "/health answered only after the model's requests"
    for sock in drips:
        sock.sendall(b"a")
    for thread in threads:
        thread.join(HANG_S)
    busy = [r for r in results if r == 503]
    assert busy and all(r in (200, 503) for r in results), results
    assert results.count(200) >= 3  # the one running and the two that waited
    for sock in drips:
        sock.close()


def test_a_busy_model_says_when_to_retry(live_server):
    server = live_server({"FAKE_MODELS_MB": "tts=20", "MAX_QUEUE": "0"}, app=APP)
    results: list = []
    thread = _hold(server, results)
    _wait_for(lambda: _in_use(server) == 1, "the request is running")
    refused = requests.post(server.url + "/fake/tts", json={}, timeout=HANG_S)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_busy"
    assert int(refused.headers["Retry-After"]) > 0
    thread.join(HANG_S)
    assert results == [200]


def test_gunicorn_bounds_the_request_line_and_headers(live_server):
    """gunicorn_config.py's limit_request_*: 414 and 431 before the app, both in /openapi.json."""
    server = live_server({"FAKE_MODELS_MB": "tts=20"}, app=APP)
    assert requests.get(server.url + "/health?q=" + "a" * 5000, timeout=HANG_S).status_code == 414
    many = {f"X-H{i}": "v" for i in range(70)}
    assert requests.get(server.url + "/health", headers=many, timeout=HANG_S).status_code == 431
    assert requests.get(server.url + "/health", headers={"X-Big": "v" * 9000}, timeout=HANG_S).status_code == 431
    assert requests.get(server.url + "/health", timeout=HANG_S).status_code == 200
