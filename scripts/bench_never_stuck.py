"""Issue 24's property through HTTP: random request sequences on one real Gunicorn worker in a memory cgroup.

    .venv/bin/python scripts/bench_never_stuck.py --sequences 10 --steps 15 --seed 24
    .venv/bin/python scripts/bench_never_stuck.py --real --reproduction ENABLED_MODELS=tts,language MODEL_TTL_S=10

Requests go one at a time, so nothing else is ever in flight: the invariant says each one is
served, or answered 503 memory_budget_exceeded with `recycling: true` while the worker is
replaced and then served by the fresh one. Any other refusal is counted as a violation. Each
sequence picks (seeded) models and text kinds (short, long, numeric) and, now and then, an admin
unload (the TTL's effect, without waiting for it). The server is started once per sequence with
the previous sequence's STATE_DIR (the cost file is kept, as across restarts).

Default: the real app with fake-memory models (tests/budget_app.py) whose memory stays resident
after an unload (`leak`: what an allocator keeps), sized like the issue's worker. `--real`: the real
app and models (ENABLED_MODELS; the Kokoro int8 and whisper-base ONNX in ONNX_DIR): TTS texts short,
long and numeric; language gets real Kokoro speech (scripts/speech_clips.py: one sentence, or four
back to back); steps also let the TTL expire (MODEL_TTL_S, waited for) and disconnect in the middle
of a long streamed text. `--reproduction` runs issue 24's reproduction first: a long numeric text,
a restart with the cost file kept, then tts, tts, language, language, tts.
Prints one line per request (status, seconds, the activations admission kept room for, for its
size, and the rule) and a summary: sequences, requests, served, recycles, refusals with nothing in
flight, peak cgroup memory, OOM kills. Loopback only; bounded by --steps and --timeout.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from scripts.budget.cgroup import make_meter
from scripts.budget.server import Server

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-never-stuck"
FAKE_MODELS = "tts=170:170:leak,language=130:130:leak,ai_voice=100"
FAKE_WORK_MB = {"short": 20, "long": 60, "numeric": 90}  # a request's activations, by text kind
TEXTS = {"short": "Hello there, this is a short test.",
         "long": " ".join(["The committee met on a grey morning to talk about the bridge and the long delay."] * 4),
         "numeric": "9" * 40}
PORTS = range(18300, 18400)  # this helper's port range (loopback)
CLIP_LANGUAGES = ("es", "fr", "it", "hi")


def speech_clips(cache: Path) -> dict[str, bytes]:
    """WAV bytes of real Kokoro speech: "short" one sentence (~4 s), "long" four back to back (~15 s)."""
    import io

    import soundfile

    from scripts.speech_clips import kokoro_clips

    clips = kokoro_clips(cache, CLIP_LANGUAGES, per_language=1)
    out = {}
    for kind, audio in (("short", clips[0][1]), ("long", np.concatenate([a for _, a in clips]))):
        buffer = io.BytesIO()
        soundfile.write(buffer, audio, 16000, format="WAV", subtype="PCM_16")
        out[kind] = buffer.getvalue()
    return out


def _request(url: str, name: str, kind: str, real: bool, clips: dict[str, bytes], timeout_s: float,
             disconnect: bool = False) -> requests.Response:
    if not real:
        return requests.post(f"{url}/fake/{name}", json={"work_mb": FAKE_WORK_MB[kind]}, timeout=timeout_s)
    if name == "tts":
        response = requests.post(f"{url}/api/tts", json={"text": TEXTS[kind], "format": "wav"}, timeout=timeout_s,
                                 stream=disconnect)
        if disconnect and response.ok:
            next(response.iter_content(4096), None)  # the first audio, then the client goes
            response.close()
        return response
    audio = clips["long" if kind == "long" else "short"]
    return requests.post(f"{url}/api/detect-language", data=audio, headers={"Content-Type": "audio/wav"},
                         timeout=timeout_s)


def _admitted(url: str, name: str) -> str:
    """What admission kept room for the last request of `name` (its size, MB, rule) and what is loaded now."""
    try:
        rows = {row["name"]: row for row in requests.get(f"{url}/api/models", timeout=30).json()["models"]}
    except (requests.RequestException, ValueError, KeyError):
        return "?"
    row, loaded = rows.get(name, {}), ",".join(n for n, r in rows.items() if r["state"] == "loaded")
    if row.get("request_mb") is None:
        return f"- [loaded: {loaded}]"
    return f"size {row.get('request_size')} -> {row['request_mb']} MB ({row.get('request_rule')}) [loaded: {loaded}]"


def _served_or_recycled(url: str, name: str, kind: str, real: bool, clips: dict[str, bytes], timeout_s: float,
                        tally: dict[str, int], disconnect: bool = False) -> None:
    """One request as the invariant sees it; the tally counts what happened."""
    tally["requests"] += 1
    started = time.monotonic()
    response = _request(url, name, kind, real, clips, timeout_s, disconnect)
    if response.ok:
        tally["served"] += 1
        print(f"  {name}:{kind}{' (disconnected)' if disconnect else ''} {response.status_code} "
              f"{time.monotonic() - started:.1f}s admitted {_admitted(url, name)}", flush=True)
        return
    error = response.json().get("error", {}) if response.headers.get("Content-Type", "").startswith(
        "application/json") else {}
    if response.status_code == 503 and error.get("recycling"):
        tally["recycles"] += 1
        deadline, retry = time.monotonic() + timeout_s, response
        while time.monotonic() < deadline:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            retry = _request(url, name, kind, real, clips, timeout_s, disconnect)
            if retry.ok:
                tally["served"] += 1
                print(f"  {name}:{kind} served after a recycle {time.monotonic() - started:.1f}s admitted "
                      f"{_admitted(url, name)}", flush=True)
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
    parser.add_argument("--clips", type=Path, default=ROOT / "models" / "speech-clips-never-stuck",
                        help="--real: cache of the Kokoro speech clips language requests send")
    parser.add_argument("--reproduction", action="store_true", help="issue 24's reproduction before the sequences")
    parser.add_argument("--squeeze", action="store_true",
                        help="after the reproduction: short and long TTS beside an idle language model (which stays?)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one request may take")
    parser.add_argument("--state", type=Path, help="STATE_DIR to start from (a cost file an earlier run learnt)")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.settings)
    models = (extra.get("ENABLED_MODELS", "tts").split(",") if args.real else ["tts", "language", "ai_voice"])
    clips = speech_clips(args.clips) if args.real and "language" in models else {}
    ttl_s = float(extra.get("MODEL_TTL_S", "3600"))
    rng = random.Random(args.seed)
    state = args.state or Path(tempfile.mkdtemp(prefix="never-stuck-state-"))
    tally = {"requests": 0, "served": 0, "recycles": 0, "refused_with_nothing_in_flight": 0, "other_errors": 0,
             "unloads": 0, "ttl_expiries": 0, "disconnects": 0, "oom_kills": 0, "connections_lost": 0}
    peak_mb, started = 0.0, time.monotonic()
    app = "backend.wsgi:app" if args.real else "tests.budget_app:create_app()"
    print(f"# {args.sequences} sequences x {args.steps} steps, seed {args.seed}, budget {args.budget_mb:.0f} MB, "
          f"app {app}, models {','.join(models)}, load {os.getloadavg()[0]:.2f}", flush=True)
    plans = [_plan(rng, models, args.steps, args.real, ttl_s < 3600) for _ in range(args.sequences)]
    if args.reproduction:  # issue 24: a long numeric text, a restart with the cost file kept, then the five
        plans = [["tts:numeric"], ["tts:short", "tts:short", "language:short", "language:short", "tts:short"]] + plans
    if args.squeeze:  # a short text fits beside the idle language model; a long one needs it evicted
        plans.insert(2 if args.reproduction else 0, ["tts:short", "language:short", "tts:short", "tts:short",
                                                     "tts:numeric"])
    for sequence, plan in enumerate(plans):
        env = {k: v for k, v in os.environ.items() if k.isupper() and k not in ("MEMORY_BUDGET_MB",)}
        env.update({"MEMORY_BUDGET_MB": str(int(args.budget_mb)), "WORKERS": "1", "STATE_DIR": str(state),
                    "ADMIN_API_KEYS": ADMIN_KEY, "RATE_LIMIT": "", "PYTHONUNBUFFERED": "1", "MODEL_TTL_S": "3600"},
                   **({} if args.real else {"FAKE_MODELS_MB": FAKE_MODELS}), **extra)
        meter = make_meter(args.budget_mb, name=f"i24-cost-never-stuck-{os.getpid()}-{sequence}")
        log = state / f"server-{sequence}.log"
        port = PORTS[sequence % len(PORTS)]
        server = Server(app, env, port, meter, log, time.monotonic, state / f"ctl-{sequence}.sock")
        print(f"sequence {sequence}: {' '.join(plan)}", flush=True)
        try:
            server.wait_ready(timeout_s=300, ready_timeout_s=120)
            for step in plan:
                what, _, arg = step.partition(":")
                if what == "unload":
                    requests.delete(f"{server.url}/api/models/{arg}", headers={"x-api-key": ADMIN_KEY}, timeout=60)
                    tally["unloads"] += 1
                    continue
                if what == "ttl":  # wait out the TTL and the sweeper's period (MODEL_TTL_S / 4)
                    time.sleep(ttl_s * 1.25 + 1)
                    tally["ttl_expiries"] += 1
                    continue
                name, disconnect = what, arg.endswith("+disconnect")
                kind = arg.removesuffix("+disconnect")
                try:
                    _served_or_recycled(server.url, name, kind, args.real, clips, args.timeout, tally, disconnect)
                except requests.ConnectionError as exc:  # the worker died mid-request (an OOM kill)
                    tally["connections_lost"] += 1
                    print(f"  connection lost: {name} {kind}: {exc}", flush=True)
                    server.wait_ready(timeout_s=300, ready_timeout_s=120)
                tally["disconnects"] += disconnect
                peak_mb = max(peak_mb, meter.read().working_set_mb)
        finally:
            kernel_peak = meter.kernel_peak_mb()
            if kernel_peak is not None:
                peak_mb = max(peak_mb, kernel_peak)
            tally["oom_kills"] += meter.read().oom_kills or 0
            server.stop()
            meter.remove()
        print(f"  after sequence {sequence}: peak {peak_mb:.1f} MB, {json.dumps(tally)}", flush=True)
    summary = {**tally, "sequences": len(plans), "seed": args.seed, "peak_mb": round(peak_mb, 1), "meter": meter.describe(),
               "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(summary), flush=True)
    return 1 if tally["refused_with_nothing_in_flight"] or tally["oom_kills"] else 0


def _plan(rng: random.Random, models: list[str], steps: int, real: bool, ttl: bool) -> list[str]:
    """One sequence's steps (seeded): requests by model and text kind, unloads, TTL expiries, disconnects."""
    plan = []
    for _ in range(steps):
        roll = rng.random()
        if roll < 0.12:
            plan.append(f"unload:{rng.choice(models)}")
        elif ttl and roll < 0.2:
            plan.append("ttl:")
        elif real and "tts" in models and roll < 0.28:
            plan.append("tts:long+disconnect")
        else:
            plan.append(f"{rng.choice(models)}:{rng.choice(list(TEXTS))}")
    return plan


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
