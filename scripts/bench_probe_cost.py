"""CPU a probe costs the worker: /health, /ready and /ready/tts under Gunicorn, per request.

    .venv/bin/python scripts/bench_probe_cost.py --requests 300

Starts Gunicorn (gunicorn_config.py, the defaults, no warm-up, RATE_LIMIT off) on a free loopback
port, sends --requests sequential GETs to each path and prints the worker's CPU-milliseconds
(user + system, /proc) and the wall milliseconds per request. On a 0.1 CPU box a probe's CPU time
is ten times its wall time: this is what a health checker's polling takes from synthesis.
Bounded in time; the server is stopped by pid. Figures go to docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import psutil
import requests

from scripts.bench_health import ROOT, free_port, parse_config

PATHS = ("/health", "/ready", "/ready/tts")


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("config", nargs="?", default="", help="settings as NAME=VALUE,NAME=VALUE")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="probe-cost-") as state:
        env = {**os.environ, "PORT": str(port), "WARM_MODELS": "", "RATE_LIMIT": "", "STATE_DIR": state,
               **parse_config(args.config)}
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "backend.wsgi:app"],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url, deadline = f"http://127.0.0.1:{port}", time.time() + 120
            while time.time() < deadline:
                try:
                    if requests.get(url + "/health", timeout=2).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.2)
            worker = psutil.Process(server.pid).children()[0].pid
            print("| path | requests | worker CPU ms per request | wall ms per request |\n|---|---|---|---|")
            with requests.Session() as session:
                for path in PATHS:
                    session.get(url + path, timeout=30)  # first call: lazy imports, not the steady cost
                    cpu0, wall0 = cpu_s(worker), time.perf_counter()
                    for _ in range(args.requests):
                        session.get(url + path, timeout=30)
                    cpu, wall = cpu_s(worker) - cpu0, time.perf_counter() - wall0
                    print(f"| {path} | {args.requests} | {1000 * cpu / args.requests:.1f} | "
                          f"{1000 * wall / args.requests:.1f} |")
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
