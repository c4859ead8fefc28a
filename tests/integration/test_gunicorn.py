"""Real Gunicorn with gunicorn_config.py on a loopback port."""
from __future__ import annotations

import time

import psutil
import requests


def _workers(server, expected: int = 1, timeout_s: float = 30) -> list[psutil.Process]:
    """The master's workers, once `expected` of them have booted (/health answers after the first)."""
    deadline = time.time() + timeout_s
    while len(children := psutil.Process(server.proc.pid).children()) < expected and time.time() < deadline:
        time.sleep(0.2)
    return children


def test_default_is_one_worker(live_server):
    server = live_server()
    assert len(_workers(server)) == 1
    assert requests.get(server.url + "/health", timeout=5).json()["status"] == "ok"


def test_two_workers_with_preload(live_server):
    server = live_server({"WORKERS": "2", "PRELOAD": "true"})
    workers = _workers(server, expected=2)
    assert len(workers) == 2
    pids = {requests.get(server.url + "/health", timeout=5).json()["pid"] for _ in range(20)}
    assert pids <= {w.pid for w in workers}
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert "speech_api_memory_budget_bytes" in metrics
    assert "memory budget 512 MB" in server.output()


def test_errors_from_gunicorn_are_json(live_server):
    server = live_server({"MAX_UPLOAD_MB": "1", "ADMIN_API_KEYS": "k"})
    response = requests.post(server.url + "/api/models/tts/load", data=b"x" * (3 * 1024 * 1024),
                             headers={"x-api-key": "k"}, timeout=10)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert requests.get(server.url + "/health", timeout=5).status_code == 200  # the worker survived


def test_pinned_models_load_in_each_worker_after_fork_not_in_the_master(live_server):
    env = {"WORKERS": "2", "PRELOAD": "true", "PRELOAD_MODELS": "tts", "FAKE_MODELS_MB": "tts=100"}
    server = live_server(env, wait_path="/ready", app="tests.budget_app:create_app()")
    workers = _workers(server, expected=2)
    pids = {requests.post(server.url + "/fake/tts", json={}, timeout=10).json()["pid"] for _ in range(30)}
    assert pids == {w.pid for w in workers}  # both workers answer, each with its own pinned copy
    own_mb = [w.memory_full_info().uss / 2**20 for w in workers]  # pages of its own, not shared
    assert all(mb > 100 for mb in own_mb), own_mb  # each worker holds its own 100 MB model
    master_mb = psutil.Process(server.proc.pid).memory_info().rss / 2**20
    assert all(w.memory_info().rss / 2**20 - master_mb > 60 for w in workers)  # the master holds none
    assert server.output().count("event=model_loaded model=tts") == 2


def test_warm_models_build_in_the_background_after_boot_unpinned(live_server):
    env = {"WARM_MODELS": "tts", "FAKE_MODELS_MB": "tts=60,language=40", "ADMIN_API_KEYS": "k"}
    server = live_server(env, app="tests.budget_app:create_app()")
    deadline = time.time() + 30
    while "warm-up tts: built" not in server.output() and time.time() < deadline:
        time.sleep(0.2)
    rows = {m["name"]: m for m in requests.get(server.url + "/api/models", headers={"x-api-key": "k"}, timeout=5).json()["models"]}
    assert rows["tts"]["state"] == "loaded" and not rows["tts"]["pinned"]
    assert rows["language"]["state"] == "not loaded"  # only what WARM_MODELS names
    assert "inference thread(s)" in server.output()  # the quota and the threads chosen, in the start-up log


def test_probes_do_not_count_toward_max_requests(live_server):
    """A box that is only polled keeps its worker (and its built models); other requests still count."""
    server = live_server({"MAX_REQUESTS": "3", "MAX_REQUESTS_JITTER": "0"})
    [worker] = _workers(server)
    for path in ["/health"] * 5 + ["/ready"] * 3 + ["/ready/tts"] * 2:
        requests.get(server.url + path, timeout=30)
    for _ in range(2):  # two requests that count: one short of MAX_REQUESTS
        requests.get(server.url + "/api/models", timeout=30)
    assert requests.get(server.url + "/health", timeout=30).json()["pid"] == worker.pid
    assert [w.pid for w in _workers(server)] == [worker.pid]

    requests.get(server.url + "/api/models", timeout=30)  # the third: the worker is recycled after it
    worker.wait(timeout=60)
    assert requests.get(server.url + "/health", timeout=30).json()["pid"] != worker.pid
    assert "Autorestarting worker after current request." in server.output()
