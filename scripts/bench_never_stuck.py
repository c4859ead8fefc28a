"""Issue 24's property through HTTP: random request sequences on one real Gunicorn worker in a memory cgroup.

    .venv/bin/python scripts/bench_never_stuck.py --sequences 10 --steps 15 --seed 24
    .venv/bin/python scripts/bench_never_stuck.py --real MODEL_DIR=/path/models ENABLED_MODELS=tts

Requests go one at a time, so nothing else is ever in flight: the invariant says each one is
served, or answered 503 memory_budget_exceeded with `recycling: true` while the worker is
replaced and then served by the fresh one. Any other refusal is counted as a violation. Each
sequence picks (seeded) models and text kinds (short, long, numeric) and, now and then, an admin
unload (the TTL's effect, without waiting for it). The server is started once per sequence with
the previous sequence's STATE_DIR (the cost file is kept, as across restarts).

Default: the real app with fake-memory models (tests/budget_app.py) whose memory stays resident
after an unload (`leak`: what an allocator keeps), sized like the issue's worker. `--real`: the real
app and models (give MODEL_DIR and ENABLED_MODELS; TTS texts are real, language gets a real clip).
Prints one line per sequence and a summary: sequences, requests, served, recycles, refusals with
nothing in flight, peak cgroup memory, OOM kills. Loopback only; bounded by --steps and --timeout.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import requests

from scripts.budget.cgroup import make_meter
from scripts.budget.check import free_port
from scripts.budget.server import Server

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-never-stuck"
FAKE_MODELS = "tts=170:170:leak,language=130:130:leak,ai_voice=100"
FAKE_WORK_MB = {"short": 20, "long": 60, "numeric": 90}  # a request's activations, by text kind
TEXTS = {"short": "Hello there, this is a short test.",
         "long": " ".join(["The committee met on a grey morning to talk about the bridge and the long delay."] * 6),
         "numeric": "9" * 80}


def _request(url: str, name: str, kind: str, real: bool, clip: bytes | None, timeout_s: float) -> requests.Response:
    if not real:
        return requests.post(f"{url}/fake/{name}", json={"work_mb": FAKE_WORK_MB[kind]}, timeout=timeout_s)
    if name == "tts":
        return requests.post(f"{url}/api/tts", json={"text": TEXTS[kind], "format": "wav"}, timeout=timeout_s)
    assert clip is not None
    return requests.post(f"{url}/api/language", json={"audio": base64.b64encode(clip).decode()}, timeout=timeout_s)


def _served_or_recycled(url: str, name: str, kind: str, real: bool, clip: bytes | None, timeout_s: float,
                        tally: dict[str, int]) -> None:
    """One request as the invariant sees it; the tally counts what happened."""
    tally["requests"] += 1
    response = _request(url, name, kind, real, clip, timeout_s)
    if response.ok:
        tally["served"] += 1
        return
    error = response.json().get("error", {}) if response.headers.get("Content-Type", "").startswith(
        "application/json") else {}
    if response.status_code == 503 and error.get("recycling"):
        tally["recycles"] += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            retry = _request(url, name, kind, real, clip, timeout_s)
            if retry.ok:
                tally["served"] += 1
                return
            if not (retry.status_code == 503 and retry.json()["error"].get("recycling")):
                break
            response = retry
        tally["refused_with_nothing_in_flight"] += 1
        print(f"  VIOLATION after recycle: {name} {kind}: {retry.status_code} {retry.text[:300]}", flush=True)
        return
    if response.status_code == 503 and error.get("code") == "memory_budget_exceeded":
        tally["refused_with_nothing_in_flight"] += 1
        print(f"  VIOLATION: {name} {kind}: {error.get('message')}", flush=True)
    else:
        tally["other_errors"] += 1
        print(f"  error: {name} {kind}: {response.status_code} {response.text[:200]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", help="KEY=VALUE settings for the server")
    parser.add_argument("--sequences", type=int, default=10)
    parser.add_argument("--steps", type=int, default=15, help="requests (and unloads) per sequence")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--budget-mb", type=float, default=512)
    parser.add_argument("--real", action="store_true", help="the real app and models (MODEL_DIR, ENABLED_MODELS)")
    parser.add_argument("--clip", type=Path, help="--real: a speech clip (wav) for language requests")
    parser.add_argument("--timeout", type=float, default=120, help="seconds one request may take")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.settings)
    models = (extra.get("ENABLED_MODELS", "tts").split(",") if args.real else ["tts", "language", "ai_voice"])
    clip = args.clip.read_bytes() if args.clip else None
    rng = random.Random(args.seed)
    state = Path(tempfile.mkdtemp(prefix="never-stuck-state-"))
    tally = {"requests": 0, "served": 0, "recycles": 0, "refused_with_nothing_in_flight": 0, "other_errors": 0,
             "unloads": 0, "oom_kills": 0, "connections_lost": 0}
    peak_mb, started = 0.0, time.monotonic()
    app = "backend.wsgi:app" if args.real else "tests.budget_app:create_app()"
    print(f"# {args.sequences} sequences x {args.steps} steps, seed {args.seed}, budget {args.budget_mb:.0f} MB, "
          f"app {app}, models {','.join(models)}, load {os.getloadavg()[0]:.2f}", flush=True)
    for sequence in range(args.sequences):
        env = {k: v for k, v in os.environ.items() if k.isupper() and k not in ("MEMORY_BUDGET_MB",)}
        env.update({"MEMORY_BUDGET_MB": str(int(args.budget_mb)), "WORKERS": "1", "STATE_DIR": str(state),
                    "ADMIN_API_KEYS": ADMIN_KEY, "RATE_LIMIT": "", "PYTHONUNBUFFERED": "1", "MODEL_TTL_S": "3600"},
                   **({} if args.real else {"FAKE_MODELS_MB": FAKE_MODELS}), **extra)
        meter = make_meter(args.budget_mb)
        log = state / f"server-{sequence}.log"
        server = Server(app, env, free_port(), meter, log, time.monotonic, state / f"ctl-{sequence}.sock")
        steps = []
        try:
            server.wait_ready(timeout_s=180, ready_timeout_s=60)
            for _ in range(args.steps):
                if rng.random() < 0.15:
                    name = rng.choice(models)
                    steps.append(f"unload {name}")
                    requests.delete(f"{server.url}/api/models/{name}", headers={"x-api-key": ADMIN_KEY}, timeout=60)
                    tally["unloads"] += 1
                    continue
                name, kind = rng.choice(models), rng.choice(list(TEXTS))
                steps.append(f"{name}:{kind}")
                try:
                    _served_or_recycled(server.url, name, kind, args.real, clip, args.timeout, tally)
                except requests.ConnectionError as exc:  # the worker died mid-request (an OOM kill)
                    tally["connections_lost"] += 1
                    print(f"  connection lost: {name} {kind}: {exc}", flush=True)
                    server.wait_ready(timeout_s=180, ready_timeout_s=60)
                peak_mb = max(peak_mb, meter.read().working_set_mb)
        finally:
            kernel_peak = meter.kernel_peak_mb()
            if kernel_peak is not None:
                peak_mb = max(peak_mb, kernel_peak)
            tally["oom_kills"] += meter.read().oom_kills or 0
            server.stop()
            meter.remove()
        print(f"sequence {sequence}: {' '.join(steps)}", flush=True)
    summary = {**tally, "sequences": args.sequences, "peak_mb": round(peak_mb, 1), "meter": meter.describe(),
               "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(summary), flush=True)
    return 1 if tally["refused_with_nothing_in_flight"] or tally["oom_kills"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
