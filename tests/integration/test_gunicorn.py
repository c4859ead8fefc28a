"""Real Gunicorn with gunicorn_config.py on a loopback port."""
from __future__ import annotations

import psutil
import requests


def _workers(server) -> list[psutil.Process]:
    return psutil.Process(server.proc.pid).children()


def test_default_is_one_worker(live_server):
    server = live_server()
    assert len(_workers(server)) == 1
    assert requests.get(server.url + "/health", timeout=5).json()["status"] == "ok"


def test_two_workers_with_preload(live_server):
    server = live_server({"WORKERS": "2", "PRELOAD": "true"})
    workers = _workers(server)
    assert len(workers) == 2
    pids = {requests.get(server.url + "/health", timeout=5).json()["pid"] for _ in range(20)}
    assert pids <= {w.pid for w in workers}
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert "speech_api_memory_budget_bytes" in metrics
    assert "memory budget 512 MB" in server.output()


def test_errors_from_gunicorn_are_json(live_server):
    server = live_server({"MAX_UPLOAD_MB": "1", "API_KEYS": "k"})
    response = requests.post(server.url + "/api/models/tts/load", data=b"x" * (3 * 1024 * 1024),
                             headers={"x-api-key": "k"}, timeout=10)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert requests.get(server.url + "/health", timeout=5).status_code == 200  # the worker survived
