"""Run the image as Render runs it, and measure: podman, 512 MB with swap off, a CPU quota, render.yaml's environment.

    .venv/bin/python scripts/bench_shapes.py --image speech-api:lean --cpus 0.1,0.5
    .venv/bin/python scripts/bench_shapes.py --image speech-api:lean --cpus 0.1 --code-from /tmp/before --label before

For each CPU quota, one fresh container (`podman run --memory 512m --memory-swap 512m --cpus N`,
the web service's envVars from render.yaml, the host's network on a free loopback port, Redis on
the host for JOBS_BACKEND=rq) and, timed from the `podman run` command:
- /health 200, /ready 200, the first English speech (one short sentence through /v1/audio/speech),
  and the container's CPU-seconds at each (cgroup cpuacct);
- the first audio of a streamed three-sentence text (time to the first body bytes after the WAV header);
- steady-state CPU-seconds per second of audio (an ordinary two-sentence text, twice, model loaded);
- /health p50/p99 while those syntheses run.
Probes come at a health checker's rate, as Render's do ("every few seconds", a 5 s timeout; its
docs, Health Checks): render.yaml's healthCheckPath (/ready) every PROBE_EVERY_S from the first
/health 200 to the stop (its first 200 is the /ready time, so that figure is good to PROBE_EVERY_S),
and /health at the same rate while the syntheses run (its p99 is over those few samples). Faster
polling measures the prober: at 0.1 CPU, /health 4/s and /ready 2/s asked 1.7x the quota.
Before /health first answers, it is tried every 0.2 s (a refused connection costs the server nothing);
- three clients asking for short sentences for --clients-s seconds: served, refused, latencies;
- peak memory (memory.max_usage_in_bytes) and OOM kills (memory.oom_control);
- SIGTERM to exit (`podman kill --signal TERM`, then waiting for the container to stop).
--first-only stops each shape after its first English speech (the start-up figures, cheap to
repeat: --cpus 0.1,0.1,0.1); --env KEY=VALUE adds a setting to render.yaml's environment.
--code-from DIR mounts DIR's backend/, config.py and gunicorn_config.py over the image's (an
older checkout's code with the same image and models: the "before" row). Prints one JSON line
per shape and a markdown table; containers are removed by id however the run ends.
"""
from __future__ import annotations

import argparse
import io
import json
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
ONE = "Hello, this is the first sentence a new user hears."
TWO = "The weather was calm this morning. We walked along the river before the rain began."
THREE = ("The first train leaves the station at seven. It crosses the valley in about an hour. "
         "Passengers can buy coffee on board.")
SHORTS = ["Good morning to everyone.", "The meeting starts at noon.", "Please close the door.",
          "It is a lovely day.", "Thank you for waiting."]
API_KEY = "bench-shapes-key"
PROBE_EVERY_S = 5.0  # Render probes "every few seconds"
PROBE_TIMEOUT_S = 5.0  # and counts an answer slower than 5 s as a failed check


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def render_env(path: Path) -> dict[str, str]:
    """The web service's literal envVars from render.yaml (generated secrets and Redis are set by the run)."""
    blueprint = yaml.safe_load(path.read_text())
    web = next(s for s in blueprint["services"] if s["type"] == "web")
    return {v["key"]: str(v["value"]) for v in web.get("envVars", []) if "value" in v}


class Container:
    """One podman container and its cgroup counters (v1 memory and cpuacct, or v2)."""

    def __init__(self, cid: str):
        self.cid = cid
        self.paths: dict[str, Path] = {}

    def locate(self) -> bool:
        pid = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", self.cid], capture_output=True,
                             text=True).stdout.strip()
        if not pid or pid == "0":
            return False
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and not controllers:
                self.paths.setdefault("v2", Path("/sys/fs/cgroup") / path.lstrip("/"))
            for name in {"memory", "cpuacct"} & set(controllers.split(",")):
                self.paths[name] = Path("/sys/fs/cgroup") / name / path.lstrip("/")
        if "memory" in self.paths:  # v1 (or hybrid): the v2 line names no controller of ours
            self.paths.pop("v2", None)
        return True

    def cpu_s(self) -> float:
        if "cpuacct" in self.paths:
            return int((self.paths["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        stat = dict(line.split() for line in (self.paths["v2"] / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6

    def peak_mb(self) -> float:
        if "memory" in self.paths:
            return int((self.paths["memory"] / "memory.max_usage_in_bytes").read_text()) / 2**20
        return int((self.paths["v2"] / "memory.peak").read_text()) / 2**20

    def oom_kills(self) -> int:
        if "memory" in self.paths:
            text = (self.paths["memory"] / "memory.oom_control").read_text()
        else:
            text = (self.paths["v2"] / "memory.events").read_text()
        return int(dict(line.split() for line in text.splitlines()).get("oom_kill", 0))


def speak(base: str, text: str, *, timeout: float = 300) -> tuple[int, float, float, str]:
    """(status, seconds, audio seconds, voice) of one /v1/audio/speech request."""
    start = time.monotonic()
    response = requests.post(f"{base}/v1/audio/speech", timeout=timeout, headers={"x-api-key": API_KEY},
                             json={"model": "tts-1", "input": text, "voice": "alloy", "response_format": "wav"})
    took = time.monotonic() - start
    audio_s = 0.0
    if response.status_code == 200:
        with wave.open(io.BytesIO(response.content)) as wav:
            # A streamed WAV's header cannot know its length: count the bytes after the 44-byte header.
            frame_bytes = wav.getsampwidth() * wav.getnchannels()
            audio_s = (len(response.content) - 44) / frame_bytes / wav.getframerate()
    return response.status_code, took, audio_s, response.headers.get("X-Voice", "")


def first_audio_s(base: str, text: str) -> tuple[float | None, float]:
    """(seconds to the first audio bytes after the WAV header, seconds to the end) of a streamed request."""
    start = time.monotonic()
    first = None
    received = 0
    with requests.post(f"{base}/v1/audio/speech", stream=True, timeout=600, headers={"x-api-key": API_KEY},
                       json={"model": "tts-1", "input": text, "voice": "alloy", "response_format": "wav"}) as response:
        for chunk in response.iter_content(chunk_size=None):
            received += len(chunk)
            if first is None and received > 44:
                first = time.monotonic() - start
    return first, time.monotonic() - start


class Prober(threading.Thread):
    """GET `path` every PROBE_EVERY_S (a 5 s timeout, as Render's checker) until stopped.

    Keeps each answer's latency and status (0: no answer in time), and when the first 200 came.
    """

    def __init__(self, base: str, path: str, t0: float, box: "Container | None" = None):
        super().__init__(daemon=True)
        self.base, self.path, self.t0, self.box = base, path, t0, box
        self.times: list[float] = []
        self.statuses: list[int] = []
        self.first_200: dict = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            start = time.monotonic()
            try:
                status = requests.get(f"{self.base}{self.path}", timeout=PROBE_TIMEOUT_S,
                                      headers={"x-api-key": API_KEY}).status_code
            except requests.RequestException:
                status = 0
            self.times.append(time.monotonic() - start)
            self.statuses.append(status)
            if status == 200 and not self.first_200:
                self.first_200.update(s=round(time.monotonic() - self.t0, 1),
                                      cpu_s=round(self.box.cpu_s(), 2) if self.box else None)
            self.halt.wait(max(0.0, PROBE_EVERY_S - (time.monotonic() - start)))

    def stop(self) -> None:
        self.halt.set()
        self.join()

    @property
    def failures(self) -> int:
        return sum(status == 0 or status >= 400 for status in self.statuses)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def clients(base: str, seconds: float, count: int = 3) -> dict:
    """`count` clients, each asking for short sentences back to back until `seconds` have passed."""
    results: list[tuple[int, float]] = []
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        i = k
        while time.monotonic() < deadline:
            try:
                status, took, _, _ = speak(base, SHORTS[i % len(SHORTS)], timeout=600)
            except requests.RequestException:
                status, took = 0, 0.0
            results.append((status, took))
            i += 1
            if status != 200:
                time.sleep(5)  # a refused client backs off as a real one would (Retry-After is longer)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    served = [took for status, took in results if status == 200]
    refused = [status for status, _ in results if status != 200]
    return {"served": len(served), "refused": len(refused), "refused_codes": sorted(set(refused)),
            "p50_s": round(statistics.median(served), 1) if served else None,
            "max_s": round(max(served), 1) if served else None}


def run_shape(args: argparse.Namespace, cpus: float, redis_url: str, port: int) -> dict:
    base = f"http://127.0.0.1:{port}"
    env = {**render_env(ROOT / "render.yaml"), "PORT": str(port), "REDIS_URL": redis_url, "API_KEYS": API_KEY,
           "ADMIN_API_KEYS": "bench-admin", **dict(item.split("=", 1) for item in args.env)}
    name = f"{args.name_prefix}-{cpus:g}cpu-{int(time.time())}"
    command = ["podman", "run", "-d", "--name", name, "--runtime", "runc", "--network", "host", "--memory", args.memory,
               "--memory-swap", args.memory, "--cpus", str(cpus), "--ulimit", "nofile=20000:20000",
               "--ulimit", "nproc=4096:4096"]
    for key, value in env.items():
        command += ["--env", f"{key}={value}"]
    if args.code_from:
        for name in ("backend", "config.py", "gunicorn_config.py"):
            command += ["--volume", f"{Path(args.code_from).resolve() / name}:/app/{name}:ro"]
    row: dict = {"label": args.label, "cpus": cpus, "image": args.image}
    t0 = time.monotonic()
    cid = subprocess.run([*command, args.image], capture_output=True, text=True, check=True).stdout.strip()
    box = Container(cid)
    try:
        while not box.locate():
            time.sleep(0.05)
        while time.monotonic() - t0 < args.wait_s:
            try:
                if requests.get(f"{base}/health", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        row["health_s"], row["health_cpu_s"] = round(time.monotonic() - t0, 1), round(box.cpu_s(), 2)
        ready_prober = Prober(base, "/ready", t0, box)  # Render's checker: healthCheckPath, until the stop
        ready_prober.start()
        status, _, audio_s, voice = speak(base, ONE)
        row.update(first_speech_status=status, first_speech_s=round(time.monotonic() - t0, 1),
                   first_speech_cpu_s=round(box.cpu_s(), 2), first_speech_voice=voice,
                   first_speech_audio_s=round(audio_s, 2))
        if args.first_only:  # the start-up figures alone: straight to the stop
            ready_prober.stop()
            row.update(ready_s=ready_prober.first_200.get("s"), ready_cpu_s=ready_prober.first_200.get("cpu_s"))
            return finish(args, row, box, cid, cpus)
        poller = Prober(base, "/health", t0)
        poller.start()
        first, total = first_audio_s(base, THREE)
        row.update(stream_first_audio_s=round(first, 1) if first else None, stream_total_s=round(total, 1))
        cpu_before, audio_total = box.cpu_s(), 0.0
        for _ in range(2):
            status, _, audio_s, _ = speak(base, TWO)
            audio_total += audio_s
        row["cpu_s_per_audio_s"] = round((box.cpu_s() - cpu_before) / audio_total, 2) if audio_total else None
        poller.stop()
        row.update(health_p50_s=pct(poller.times, 0.5), health_p99_s=pct(poller.times, 0.99),
                   health_samples=len(poller.times), health_failures=poller.failures)
        while not ready_prober.first_200 and time.monotonic() - t0 < args.wait_s:
            time.sleep(1)
        row.update(ready_s=ready_prober.first_200.get("s"), ready_cpu_s=ready_prober.first_200.get("cpu_s"))
        if args.clients_s > 0:
            row["clients"] = clients(base, args.clients_s)
        ready_prober.stop()
        row.update(ready_probes=len(ready_prober.statuses), ready_p99_s=pct(ready_prober.times, 0.99),
                   ready_failures_after_200=sum(1 for status in ready_prober.statuses[
                       ready_prober.statuses.index(200):] if status != 200) if 200 in ready_prober.statuses else None)
        return finish(args, row, box, cid, cpus)
    finally:
        subprocess.run(["podman", "rm", "-f", cid], capture_output=True)


def finish(args: argparse.Namespace, row: dict, box: Container, cid: str, cpus: float) -> dict:
    """Peak memory, OOM kills, then SIGTERM and the time to exit; the container's log kept if asked."""
    row.update(peak_mb=round(box.peak_mb()), oom_kills=box.oom_kills())
    stop = time.monotonic()
    subprocess.run(["podman", "kill", "--signal", "TERM", cid], capture_output=True)
    subprocess.run(["podman", "wait", cid], capture_output=True, timeout=120)
    row["sigterm_to_exit_s"] = round(time.monotonic() - stop, 1)
    row["exit_code"] = subprocess.run(["podman", "inspect", "-f", "{{.State.ExitCode}}", cid], capture_output=True,
                                      text=True).stdout.strip()
    if args.keep_logs:
        Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
        log = subprocess.run(["podman", "logs", cid], capture_output=True, text=True)
        (Path(args.keep_logs) / f"{args.label}-{cpus}.log").write_text(log.stdout + log.stderr)
    return row


def image_mb(image: str) -> float:
    size = subprocess.run(["podman", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True,
                          check=True).stdout.strip()
    return round(int(size) / 1e6)


def table(rows: list[dict]) -> str:
    head = ("| run | CPU | image MB | /health s (CPU-s) | /ready 200 s | first English speech s (CPU-s) | streamed 3 sentences: "
            "first audio s | CPU-s per audio s | /health p99 s (one probe per 5 s) | 3 clients: served / refused (p50, max s) | peak MB | OOM | "
            "SIGTERM to exit s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        c = r.get("clients") or {}
        lines.append(
            f"| {r['label']} | {r['cpus']} | {r.get('image_mb')} | {r.get('health_s')} ({r.get('health_cpu_s')}) | "
            f"{r.get('ready_s') or 'never'} | {r.get('first_speech_s')} ({r.get('first_speech_cpu_s')}; "
            f"{r.get('first_speech_voice')}) | {r.get('stream_first_audio_s')} | {r.get('cpu_s_per_audio_s')} | "
            f"{r.get('health_p99_s')} | {c.get('served', '-')} / {c.get('refused', '-')} ({c.get('p50_s')}, "
            f"{c.get('max_s')}) | {r.get('peak_mb')} | {r.get('oom_kills')} | {r.get('sigterm_to_exit_s')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="localhost/speech-api:lean")
    parser.add_argument("--cpus", default="0.1,0.5", help="comma list of CPU quotas, one container each")
    parser.add_argument("--memory", default="512m")
    parser.add_argument("--clients-s", type=float, default=240, help="seconds the three clients run; 0 = skip")
    parser.add_argument("--wait-s", type=float, default=300, help="longest wait for /health and /ready")
    parser.add_argument("--code-from", default=None, help="a checkout whose backend/ and configs replace the image's")
    parser.add_argument("--label", default="after")
    parser.add_argument("--first-only", action="store_true",
                        help="stop after the first English speech (start-up figures; repeat a shape: --cpus 0.1,0.1)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting on top of render.yaml's environment")
    parser.add_argument("--name-prefix", default="bench-shapes", help="the containers' names start with this")
    parser.add_argument("--keep-logs", default=None, help="folder for each container's log")
    parser.add_argument("--port-base", type=int, default=0,
                        help="Redis on this port, the containers on the next ones (a range of your own); 0 = free ports")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still removes its container and Redis
    redis_port = args.port_base or free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        size = image_mb(args.image)
        rows = []
        for i, cpus in enumerate(float(c) for c in args.cpus.split(",")):
            port = args.port_base + 1 + i if args.port_base else free_port()
            row = run_shape(args, cpus, f"redis://127.0.0.1:{redis_port}/0", port)
            row["image_mb"] = size
            print(json.dumps(row), flush=True)
            rows.append(row)
        print(table(rows))
    finally:
        redis.terminate()
        redis.wait(timeout=10)


if __name__ == "__main__":
    main()
