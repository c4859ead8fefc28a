"""Soak: a bounded mix of good and hostile requests against the real server; RSS slope per 1,000 requests and every status.

    .venv/bin/python scripts/soak.py --requests 2000 --concurrency 4          # starts Gunicorn itself
    .venv/bin/python scripts/soak.py --url http://127.0.0.1:8080 --requests 500

It starts Gunicorn with gunicorn_config.py (the default settings, RATE_LIMIT off unless --keep-rate-limit:
one client on loopback would otherwise measure the limiter) on a free loopback port, or drives --url.
Memory is the Gunicorn process tree's RSS (master + workers), sampled every --sample-every
requests; the slope is a least-squares line over the samples after the first 10 % (warm-up:
the TTS model is built on the first speech request). Bounded by --requests and --max-seconds;
the server it started is stopped by pid. Prints a markdown table (docs/BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
JSON = {"Content-Type": "application/json"}

# (name, weight, method, path, request kwargs): the mix a public endpoint sees, scanners included.
CALLS = [
    ("health", 20, "GET", "/health", {}),
    ("models", 5, "GET", "/api/models", {}),
    ("openapi", 2, "GET", "/openapi.json", {}),
    ("voices", 3, "GET", "/v1/audio/voices", {}),
    ("tts_short", 10, "POST", "/api/tts", {"json": {"text": "Hello there, this is a soak test.", "format": "wav"}}),
    ("openai_speech", 5, "POST", "/v1/audio/speech", {"json": {"model": "tts-1", "input": "Short and sweet.",
                                                               "voice": "alloy", "response_format": "mp3"}}),
    ("bad_json", 5, "POST", "/api/tts", {"data": "{not json", "headers": JSON}),
    ("deep_json", 5, "POST", "/api/tts", {"data": "[" * 10_000 + "]" * 10_000, "headers": JSON}),
    ("surrogate", 3, "POST", "/api/tts", {"data": '{"text": "Hi \\ud800 there."}', "headers": JSON}),
    ("huge_speed", 3, "POST", "/api/tts", {"data": '{"text": "hi", "speed": 1' + "0" * 400 + "}", "headers": JSON}),
    ("nan_voice", 3, "POST", "/api/tts", {"json": {"text": "hi", "voice": "af_heart(" + "9" * 400 + ")"}}),
    ("random_method", 5, "RANDOM", "/health", {}),
    ("forged_log", 3, "GET", "/x%0aFORGED", {}),
    ("unknown_path", 5, "GET", "/wp-login.php", {}),
    ("analysis", 5, "POST", "/api/detect-language", {"data": b"RIFF....WAVEfmt ", "headers":
                                                    {"Content-Type": "application/octet-stream"}}),
    ("admin_no_key", 3, "POST", "/api/models/tts/load", {}),
    ("many_parts", 2, "POST", "/api/detect-ai-voice", {"files": {f"f{i}": ("", "x") for i in range(1500)}}),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(keep_rate_limit: bool) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    if not keep_rate_limit:
        env["RATE_LIMIT"] = ""
    log = Path(tempfile.mkstemp(prefix="soak-gunicorn-", suffix=".log")[1])
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "backend.wsgi:app"],
                            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return proc, url, log
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not start: {log.read_text()[-2000:]}")


def tree_rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def one_call(url: str, rng: random.Random) -> tuple[str, str]:
    name, _, method, path, kwargs = rng.choices(CALLS, weights=[c[1] for c in CALLS])[0]
    if method == "RANDOM":
        method = "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=8))
    try:
        response = requests.request(method, url + path, timeout=120, **kwargs)
        return name, str(response.status_code)
    except requests.RequestException as exc:
        return name, type(exc).__name__


def slope_per_1000(samples: list[tuple[int, float]]) -> float:
    """MB per 1,000 requests: least squares over the samples after the first 10 % (warm-up)."""
    kept = samples[len(samples) // 10:]
    if len(kept) < 3:
        return float("nan")
    counts, rss = np.array([c for c, _ in kept], dtype=float), np.array([r for _, r in kept])
    return float(np.polyfit(counts, rss, 1)[0] * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="drive this server instead of starting one (RSS is then not measured)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--sample-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--keep-rate-limit", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw report here")
    args = parser.parse_args(argv)

    proc = log = None
    url = args.url
    if url is None:
        proc, url, log = start_server(args.keep_rate_limit)
    statuses: Counter[str] = Counter()
    by_call: dict[str, Counter[str]] = {}
    samples: list[tuple[int, float]] = []
    done = 0
    lock = threading.Lock()
    started = time.monotonic()
    try:
        if proc is not None:
            samples.append((0, tree_rss_mb(proc.pid)))

        def worker(index: int) -> None:
            nonlocal done
            rng = random.Random(args.seed * 1000 + index)
            while True:
                with lock:
                    if done >= args.requests or time.monotonic() - started > args.max_seconds:
                        return
                    done += 1
                name, status = one_call(url, rng)
                with lock:
                    statuses[status] += 1
                    by_call.setdefault(name, Counter())[status] += 1
                    count = sum(statuses.values())
                    if proc is not None and count % args.sample_every == 0:
                        samples.append((count, tree_rss_mb(proc.pid)))

        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(worker, range(args.concurrency)))
        alive = proc is None or proc.poll() is None
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    seconds = time.monotonic() - started
    total = sum(statuses.values())
    report = {"requests": total, "seconds": round(seconds, 1), "concurrency": args.concurrency,
              "statuses": dict(sorted(statuses.items())), "by_call": {k: dict(v) for k, v in sorted(by_call.items())},
              "rss_samples": samples, "server_alive_at_end": alive,
              "rss_first_mb": round(samples[0][1], 1) if samples else None,
              "rss_last_mb": round(samples[-1][1], 1) if samples else None,
              "rss_slope_mb_per_1000": round(slope_per_1000(samples), 2) if samples else None}
    print("| requests | seconds | concurrency | RSS start -> end (MB) | RSS slope per 1,000 requests | statuses |")
    print("|---|---|---|---|---|---|")
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    print(f"| {total} | {seconds:.0f} | {args.concurrency} | {report['rss_first_mb']} -> {report['rss_last_mb']} "
          f"| {report['rss_slope_mb_per_1000']:+} MB | {codes} |")
    print()
    print("| call | statuses |")
    print("|---|---|")
    for name, counts in sorted(by_call.items()):
        print(f"| {name} | {', '.join(f'{code}: {n}' for code, n in sorted(counts.items()))} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if log is not None:
        errors = [line for line in log.read_text(errors="replace").splitlines() if "Traceback" in line]
        print(f"\nserver log: {log} ({len(errors)} tracebacks); server alive at the end: {alive}")
    server_errors = sum(n for code, n in statuses.items() if code.startswith("5") and code != "503")
    return 0 if alive and server_errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
