"""Worker boot memory: RSS/PSS of a fresh Gunicorn service before any model is built.

Starts the real server (gunicorn_config.py) on a loopback port for each variant, waits for
/health, reads every process's RSS, PSS and USS from /proc, then stops it by pid.
Usage: .venv/bin/python scripts/bench_boot.py   (prints a markdown table for docs/BENCHMARKS.md)
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
VARIANTS = [
    {"WORKERS": "1", "PRELOAD": "false"},
    {"WORKERS": "2", "PRELOAD": "false"},
    {"WORKERS": "2", "PRELOAD": "true"},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(env_vars: dict[str, str]) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, **env_vars, "PORT": str(port), "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "backend.wsgi:app"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                if time.time() > deadline:
                    raise
            time.sleep(0.2)
        time.sleep(1.0)  # let every worker finish booting
        master = psutil.Process(proc.pid)
        workers = master.children()
        info = {p.pid: p.memory_full_info() for p in [master, *workers]}
        worker_rss = [info[w.pid].rss / MB for w in workers]
        return {"workers": len(workers), "master_rss": info[master.pid].rss / MB,
                "worker_rss": max(worker_rss), "worker_uss": max(info[w.pid].uss / MB for w in workers),
                "total_pss": sum(i.pss for i in info.values()) / MB}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    print("| WORKERS | PRELOAD | master RSS | worker RSS | worker USS | total PSS |")
    print("|---|---|---|---|---|---|")
    for variant in VARIANTS:
        m = measure(variant)
        print(f"| {variant['WORKERS']} | {variant['PRELOAD']} | {m['master_rss']:.0f} | {m['worker_rss']:.0f} | "
              f"{m['worker_uss']:.0f} | {m['total_pss']:.0f} |")


if __name__ == "__main__":
    main()
