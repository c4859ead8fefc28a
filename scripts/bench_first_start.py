"""A fresh clone started the README's way, timed to every milestone, language detection included.

    .venv/bin/python scripts/bench_first_start.py [--repo .] [--wait-s 3000]

Clones the repository's HEAD into a temporary folder, runs `./scripts/serve.sh` there with no settings
(a free loopback port), and prints one line per milestone with the seconds since the command: the first
/health 200, the first English speech through /v1/audio/speech (voice alloy: X-Voice says which spoke),
GET /ready, then every change of /ready/language's status and provisioning stage, until language is
servable (200) or --wait-s passes. The server's process group is stopped at the end; the clone is left
in the temporary folder (its serve.log). The team's shared first-start.sh measures the first three the same way.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

POLL_S = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, body: dict | None = None, timeout_s: float = 10) -> tuple[int, bytes, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)
    except (urllib.error.URLError, OSError):
        return 0, b"", {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--wait-s", type=float, default=3000)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="first-start-"))
    subprocess.run(["git", "clone", "-q", str(args.repo.resolve()), str(folder / "clone")], check=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(folder / "serve.log", "wb")
    started = time.monotonic()
    server = subprocess.Popen(["./scripts/serve.sh"], cwd=folder / "clone", env={**os.environ, "PORT": str(port)},
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def say(what: str) -> None:
        print(f"{time.monotonic() - started:7.0f} s  {what}", flush=True)

    health = speech = False
    last = None
    try:
        while time.monotonic() - started < args.wait_s:
            if server.poll() is not None:
                say(f"server exited ({server.returncode}); log: {folder / 'serve.log'}")
                return 1
            if not health and fetch(url + "/health", timeout_s=3)[0] == 200:
                health = True
                say("first /health 200")
            if health and not speech:
                status, _, headers = fetch(url + "/v1/audio/speech", {"model": "tts-1", "voice": "alloy",
                                           "input": "Hello, this is the first sentence a new user hears.",
                                           "response_format": "wav"}, timeout_s=300)
                if status == 200:
                    speech = True
                    say(f"first speech 200, X-Voice {headers.get('X-Voice')}")
                    say(f"GET /ready {fetch(url + '/ready')[0]}")
            if speech:
                status, body, _ = fetch(url + "/ready/language")
                row = json.loads(body or b"{}").get("models", {}).get("language", {})
                seen = (status, json.loads(body or b"{}").get("status"),
                        (row.get("provisioning") or {}).get("stage"), (row.get("last_provisioning") or {}).get("state"))
                if seen != last:
                    last = seen
                    say(f"/ready/language {status} {seen[1]}; stage {seen[2]}; last provisioning {seen[3]}"
                        + (f" ({row['last_provisioning'].get('reason')})" if seen[3] else ""))
                if status == 200:
                    return 0
            time.sleep(POLL_S)
        say(f"language not servable within {args.wait_s:.0f} s; log: {folder / 'serve.log'}")
        return 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


if __name__ == "__main__":
    raise SystemExit(main())
