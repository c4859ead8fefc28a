"""/health latency under full TTS load with slow clients connected, per server configuration.

    .venv/bin/python scripts/bench_health.py --seconds 30 THREADS=2 THREADS=8

For each configuration (settings as NAME=VALUE, several separated by commas: `THREADS=2,MAX_QUEUE=1`)
it starts Gunicorn (gunicorn_config.py, RATE_LIMIT off) on a free loopback port, keeps the TTS
model saturated (--tts-clients clients posting a two-sentence text in a loop), holds --slow-clients
connections that send their headers one byte per second, probes /health every 50 ms for
--seconds and prints p50/p95/p99/max (a probe that times out after --probe-timeout counts as
that long). Bounded in time; each server is stopped by pid. Figures go to docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
TEXT = ("The quick brown fox jumps over the lazy dog near the riverbank. "
        "Then it runs home across the fields, tired but happy.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_config(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if item)


def run(config: dict[str, str], seconds: float, tts_clients: int, slow_clients: int, probe_timeout: float) -> dict:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "LOG_LEVEL": "WARNING", "RATE_LIMIT": "", **config}
    log = Path(tempfile.mkstemp(prefix="bench-health-", suffix=".log")[1])
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "backend.wsgi:app"],
                            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    tts: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        requests.post(url + "/api/tts", json={"text": "Warm up.", "format": "wav"}, timeout=120)  # build the model

        def speak() -> None:
            while not stop.is_set():
                try:
                    status = requests.post(url + "/api/tts", json={"text": TEXT, "format": "wav"}, timeout=120).status_code
                    tts[str(status)] += 1
                    if status == 503:
                        time.sleep(0.2)  # a client that honours "busy" a little
                except requests.RequestException as exc:
                    tts[type(exc).__name__] += 1

        def drip() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                while not stop.wait(1.0):
                    try:
                        sock.sendall(b"X")  # a header that never ends
                    except OSError:
                        return

        workers = [threading.Thread(target=speak) for _ in range(tts_clients)]
        workers += [threading.Thread(target=drip) for _ in range(slow_clients)]
        for thread in workers:
            thread.start()
        time.sleep(2)  # load established
        latencies = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                requests.get(url + "/health", timeout=probe_timeout)
                latencies.append(time.perf_counter() - start)
            except requests.RequestException:
                latencies.append(probe_timeout)
            time.sleep(max(0.0, 0.05 - (time.perf_counter() - start)))
        stop.set()
        for thread in workers:
            thread.join(150)
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    ms = np.array(latencies) * 1000
    return {"probes": len(ms), "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95),
            "p99": np.percentile(ms, 99), "max": ms.max(), "timeouts": int((ms >= probe_timeout * 1000).sum()),
            "tts": dict(sorted(tts.items()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="NAME=VALUE[,NAME=VALUE...] per server configuration")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--tts-clients", type=int, default=4)
    parser.add_argument("--slow-clients", type=int, default=2)
    parser.add_argument("--probe-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    print(f"| configuration | probes | p50 ms | p95 ms | p99 ms | max ms | timeouts ({args.probe_timeout:g} s) | TTS answers |")
    print("|---|---|---|---|---|---|---|---|")
    for text in args.configs:
        r = run(parse_config(text), args.seconds, args.tts_clients, args.slow_clients, args.probe_timeout)
        tts = ", ".join(f"{k}: {v}" for k, v in r["tts"].items())
        print(f"| `{text}` | {r['probes']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['max']:.1f} "
              f"| {r['timeouts']} | {tts} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
