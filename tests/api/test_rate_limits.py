"""Rate limits: per API key, else per client IP (X-Forwarded-For only behind TRUSTED_PROXIES), 429 with Retry-After."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.conftest import free_port

LIMIT = "3/minute"  # a minute-long window: nothing in these tests waits for it to pass


def _spend(client, n: int, **kwargs) -> list[int]:
    return [client.get("/api/models", **kwargs).status_code for _ in range(n)]


def test_the_fourth_request_in_a_window_is_a_429_with_retry_after(make_app):
    client = make_app(rate_limit=LIMIT).test_client()
    assert _spend(client, 3) == [200, 200, 200]
    response = client.get("/api/models")
    assert response.status_code == 429 and response.is_json
    error = response.json["error"]
    assert error["code"] == "rate_limited" and 0 < int(response.headers["Retry-After"]) <= 61  # the window, rounded up
    assert error["retry_after_s"] == int(response.headers["Retry-After"])


def test_the_limit_is_shared_by_every_limited_route_and_health_is_never_limited(make_app):
    client = make_app(rate_limit=LIMIT).test_client()
    client.get("/api/models")
    client.get("/api/voices")
    client.post("/api/tts", json={})  # a 400 counts too: it was a request
    assert client.get("/v1/audio/voices").status_code == 429
    assert all(client.get(path).status_code in (200, 503) for path in ("/health", "/ready", "/metrics", "/openapi.json")
               for _ in range(5))


def test_each_key_has_its_own_budget_and_unknown_keys_count_as_their_ip(make_app):
    client = make_app(rate_limit=LIMIT, api_keys="k1,k2").test_client()
    assert _spend(client, 3, headers={"x-api-key": "k1"}) == [200] * 3
    assert client.get("/api/models", headers={"x-api-key": "k1"}).status_code == 429
    assert _spend(client, 3, headers={"Authorization": "Bearer k2"}) == [200] * 3
    # Wrong keys are refused (401), and counted against the client's IP, not a fresh budget per made-up key.
    assert [client.get("/api/models", headers={"x-api-key": f"guess{i}"}).status_code for i in range(4)] == \
        [401, 401, 401, 429]


def test_x_forwarded_for_is_ignored_without_trusted_proxies(make_app):
    client = make_app(rate_limit=LIMIT).test_client()
    codes = [client.get("/api/models", headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]  # forging the header does not buy a fresh budget


def test_behind_one_trusted_proxy_the_client_is_the_hop_it_appended(make_app):
    client = make_app(rate_limit=LIMIT, trusted_proxies=1).test_client()
    # The proxy appends the real peer; whatever the client wrote before it is not trusted.
    forged = [client.get("/api/models", headers={"X-Forwarded-For": f"1.2.3.{i}, 203.0.113.7"}).status_code
              for i in range(4)]
    assert forged == [200, 200, 200, 429]
    assert client.get("/api/models", headers={"X-Forwarded-For": "198.51.100.9"}).status_code == 200


def test_the_contract_route_answers_429_in_its_own_envelope(make_app):
    client = make_app(rate_limit="1/minute").test_client()
    client.post("/api/voice-detection", json={})
    response = client.post("/api/voice-detection", json={})
    assert response.status_code == 429 and response.json["status"] == "error"
    assert int(response.headers["Retry-After"]) > 0


@pytest.fixture
def redis_url():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/setup.sh dev installs it)")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    redis = pytest.importorskip("redis")
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline and server.poll() is None, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=10)


def test_with_redis_url_two_workers_share_one_budget(make_app, redis_url):
    """Two apps (as two Gunicorn workers, or two instances) count against the same Redis counters."""
    first = make_app(rate_limit=LIMIT, redis_url=redis_url).test_client()
    second = make_app(rate_limit=LIMIT, redis_url=redis_url).test_client()
    assert [c.get("/api/models").status_code for c in (first, second, first)] == [200, 200, 200]
    assert second.get("/api/models").status_code == 429
