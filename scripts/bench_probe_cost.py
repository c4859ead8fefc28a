"""CPU a probe costs the worker: /health, /ready and /ready/tts under Gunicorn, per request.

    .venv/bin/python -m scripts.bench_probe_cost --requests 300
    sudo .venv/bin/python -m scripts.bench_probe_cost --code before=/tmp/main-checkout --code after=. --cgroup-mb 512

Starts one Gunicorn per --code checkout (gunicorn_config.py, the defaults, no warm-up, RATE_LIMIT off,
this virtualenv) on free loopback ports, then sends sequential GETs to each path over one keep-alive
connection, the variants interleaved in --rounds blocks (so load on the box falls on each alike), and
prints the worker's CPU-milliseconds (user + system, /proc) and the wall milliseconds per request.
--cgroup-mb N runs each server in a cgroup v1 memory group of N MB of its own (root; named
--cgroup-prefix-<label>, removed at the end), as on Render, where the service's memory is read
from the cgroup's files; without it, from the process tree's PSS (a dev box).
On a 0.1 CPU box a probe's CPU time is ten times its wall time: this is what a health checker's
polling takes from synthesis. Bounded in time; servers are stopped by pid. Figures go to docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

from scripts.bench_health import ROOT, free_port, parse_config

PATHS = ("/health", "/ready", "/ready/tts")
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


class Server:
    """One Gunicorn of one checkout, in a memory cgroup of its own when asked."""

    def __init__(self, label: str, code: Path, state: str, config: dict[str, str], cgroup_mb: int,
                 cgroup_prefix: str, port: int) -> None:
        self.label, self.port = label, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PORT": str(self.port), "WARM_MODELS": "", "RATE_LIMIT": "", "STATE_DIR": state,
               "PYTHONPATH": str(code), **config}
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "backend.wsgi:app"]
        self.cgroup: Path | None = None
        if cgroup_mb:
            self.cgroup = CGROUP_ROOT / f"{cgroup_prefix}-{label}"
            self.cgroup.mkdir(exist_ok=True)
            (self.cgroup / "memory.limit_in_bytes").write_text(str(cgroup_mb * 2**20))
            command = ["sh", "-c", f'echo $$ > {self.cgroup}/cgroup.procs && exec "$@"', "sh", *command]
        self.process = subprocess.Popen(command, cwd=code, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.session = requests.Session()

    def wait(self, seconds: float = 180) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                if self.session.get(self.url + "/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        self.worker = psutil.Process(self.process.pid).children()[0].pid

    def measure(self, path: str, count: int) -> tuple[float, float]:
        """(worker CPU-s, wall s) of `count` sequential GETs."""
        cpu0, wall0 = cpu_s(self.worker), time.perf_counter()
        for _ in range(count):
            self.session.get(self.url + path, timeout=30)
        return cpu_s(self.worker) - cpu0, time.perf_counter() - wall0

    def stop(self) -> None:
        self.session.close()
        self.process.terminate()
        self.process.wait(timeout=60)
        if self.cgroup is not None:
            self.cgroup.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="per path and variant")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved blocks the requests are split into")
    parser.add_argument("--code", action="append", default=[], metavar="LABEL=DIR",
                        help="a checkout to serve (repeatable); default: this one, labelled 'this'")
    parser.add_argument("--cgroup-mb", type=int, default=0, help="a memory cgroup of this size per server; 0 = none")
    parser.add_argument("--cgroup-prefix", default="bench-probe-cost")
    parser.add_argument("--port-base", type=int, default=0, help="servers on this port and the next; 0 = free ports")
    parser.add_argument("config", nargs="?", default="", help="settings as NAME=VALUE,NAME=VALUE")
    args = parser.parse_args()
    codes = [(label, Path(path).resolve()) for label, _, path in (c.partition("=") for c in args.code)] or \
        [("this", ROOT)]
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="probe-cost-") as state_root:
        try:
            for i, (label, code) in enumerate(codes):
                state = os.path.join(state_root, label)
                os.makedirs(state)
                servers.append(Server(label, code, state, parse_config(args.config), args.cgroup_mb,
                                      args.cgroup_prefix, args.port_base + i if args.port_base else 0))
            for server in servers:
                server.wait()
            totals = {(s.label, p): [0.0, 0.0] for s in servers for p in PATHS}
            for path in PATHS:
                for server in servers:
                    server.session.get(server.url + path, timeout=30)  # first call: lazy imports, not the steady cost
                block = max(1, args.requests // args.rounds)
                for _ in range(args.rounds):
                    for server in servers:
                        cpu, wall = server.measure(path, block)
                        totals[(server.label, path)][0] += cpu
                        totals[(server.label, path)][1] += wall
            count = max(1, args.requests // args.rounds) * args.rounds
            memory = f"cgroup v1, {args.cgroup_mb} MB" if args.cgroup_mb else "none (process tree PSS)"
            print(f"memory cgroup: {memory}; {count} requests per path and variant, {args.rounds} interleaved rounds")
            print("| variant | path | worker CPU ms per request | wall ms per request |\n|---|---|---|---|")
            for path in PATHS:
                for server in servers:
                    cpu, wall = totals[(server.label, path)]
                    print(f"| {server.label} | {path} | {1000 * cpu / count:.1f} | {1000 * wall / count:.1f} |")
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
