"""One budget check: server in its cgroup, memory sampled every 100 ms, a bounded workload, the facts.

`run_check(options)` returns the report as plain data (what report.json holds); the verdict and
its reasons are decided in scripts.budget.report. Whatever happens (an exception, SIGINT,
SIGTERM turned into KeyboardInterrupt by the CLI) the server is stopped by pid and the cgroup
removed before it returns or raises.
"""
from __future__ import annotations

import logging
import os
import platform
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from config import Settings, build_settings
from scripts.budget import workload
from scripts.budget.cgroup import CgroupMeter, ProcessTreeMeter, make_meter
from scripts.budget.server import Event, Server

logger = logging.getLogger(__name__)

SAMPLE_PERIOD_S = 0.1
IDLE_BEFORE_S = 1.0  # memory at rest before the workload, for the plot and the boot figure
COOLDOWN_S = 2.0  # memory after the workload: what stays once the burst is over


@dataclass
class CheckOptions:
    """Everything one run needs; `env` holds the configuration under test (WORKERS=2 ...)."""

    env: dict[str, str] = field(default_factory=dict)
    app: str = "backend.wsgi:app"
    profile: str = "speech"
    budget_mb: float | None = None  # None: MEMORY_BUDGET_MB of the configuration
    concurrency: int = 4
    duration_s: float = 60.0
    max_requests: int = 5000
    request_timeout_s: float = 120.0
    boot_timeout_s: float = 120.0
    ready_timeout_s: float = 60.0
    use_cgroup: bool = True
    max_refused_percent: float = 5.0
    seed: int = 0
    out_dir: Path = Path("reports/budget")
    label: str = ""


@dataclass
class Sampler:
    """Reads the meter every SAMPLE_PERIOD_S in a thread; notes OOM kills as events when the counter moves."""

    meter: CgroupMeter | ProcessTreeMeter
    server: Server
    clock: Any
    samples: list[dict[str, float | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: int = 0

    def run(self) -> None:
        next_at = self.clock()
        last_kills = 0
        while not self.stop.is_set():
            try:
                reading = self.meter.read()
            except (OSError, ValueError):  # cgroup files gone or mid-write
                self.errors += 1
                reading = None
            if reading is not None:
                now = self.clock()
                self.samples.append({"t_s": round(now, 3), "usage_mb": round(reading.usage_mb, 2),
                                     "working_set_mb": round(reading.working_set_mb, 2),
                                     "rss_mb": round(reading.rss_mb, 2),
                                     "pss_mb": None if reading.pss_mb is None else round(reading.pss_mb, 2)})
                if reading.oom_kills and reading.oom_kills > last_kills:
                    self.server.add_event(Event(now, "oom_kill", None, f"total={reading.oom_kills}"))
                    last_kills = reading.oom_kills
            next_at += SAMPLE_PERIOD_S
            self.stop.wait(max(0.0, next_at - self.clock()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def validated_settings(env: dict[str, str]) -> Settings:
    """The configuration under test as the server will read it (this environment plus `env`)."""
    names = set(Settings.model_fields)
    overrides = {key.lower(): value for key, value in env.items() if key.lower() in names}
    return build_settings(**overrides)


def server_env(options: CheckOptions, settings: Settings, budget_mb: float, port: int, run_dir: Path,
               api_key: str) -> dict[str, str]:
    env = {**os.environ, **options.env}
    if "STATE_DIR" not in options.env:
        # A fresh deploy's state: the first admissions use the estimates, as on a new instance, and
        # what this run measures is shared by its workers and restarts, never with another run.
        env["STATE_DIR"] = str(run_dir / "state")
    env.update({
        "MEMORY_BUDGET_MB": str(int(budget_mb)),
        "PORT": str(port),
        "LOG_LEVEL": "INFO",  # registry events (model_loaded/unloaded) are INFO lines; the check reads them
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics"),  # never share counters with another server
        "PYTHONUNBUFFERED": "1",
    })
    if not settings.api_keys:
        env["API_KEYS"] = api_key
    if not settings.admin_api_keys:
        env["ADMIN_API_KEYS"] = api_key  # admin load/unload calls are part of the workload
    if "RATE_LIMIT" not in options.env:
        env["RATE_LIMIT"] = ""  # the workload measures memory, not the limiter: it may send faster than a client
    return env


def scrape_registry_counters(url: str) -> dict[str, Any] | None:
    """Model loads, unloads by reason and refusals from /metrics (summed over workers), or None."""
    try:
        text = requests.get(url + "/metrics", timeout=10).text
    except requests.RequestException:
        return None
    counters: dict[str, Any] = {"loads": {}, "unloads": {}, "refusals": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            model = sample.labels.get("model", "?")
            if sample.name == "speech_api_model_loads_total":
                counters["loads"][model] = int(sample.value)
            elif sample.name == "speech_api_model_refusals_total":
                counters["refusals"][model] = int(sample.value)
            elif sample.name == "speech_api_model_evictions_total":
                reason = sample.labels.get("reason", "?")
                counters["unloads"].setdefault(reason, {})[model] = int(sample.value)
    return counters


def fetch_models(url: str) -> dict[str, Any] | None:
    try:
        return requests.get(url + "/api/models", timeout=10).json()
    except (requests.RequestException, ValueError):
        return None


def machine_facts() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "host_cpus": os.cpu_count(),
            "load_avg": [round(load1, 2), round(load5, 2), round(load15, 2)], "kernel": platform.release(),
            "python": platform.python_version()}


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block is done (cleanup must finish), then raise KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        logger.warning("%s received during cleanup: held until the server was stopped and the cgroup removed",
                       signal.Signals(received[0]).name)
        raise KeyboardInterrupt(signal.Signals(received[0]).name)


def run_check(options: CheckOptions) -> dict[str, Any]:
    """Run one configuration end to end and return the raw report (no verdict yet)."""
    settings = validated_settings(options.env)
    budget_mb = float(options.budget_mb or settings.memory_budget_mb)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    calls = workload.PROFILES[options.profile]
    api_key = settings.api_keys[0] if settings.api_keys else f"budget-check-{secrets.token_hex(8)}"
    ctx = workload.Context(api_key=api_key, wav=workload.speech_wav() if options.profile != "fake" else b"")

    t0 = time.monotonic()
    clock = lambda: time.monotonic() - t0  # noqa: E731 - every timestamp is seconds since the start
    run_dir = Path(tempfile.mkdtemp(prefix="budget-check-"))  # metrics files, control socket
    meter = make_meter(budget_mb, use_cgroup=options.use_cgroup)
    server: Server | None = None
    sampler_thread: threading.Thread | None = None
    sampler: Sampler | None = None
    report: dict[str, Any] = {
        "label": options.label, "options": {**asdict(options), "out_dir": str(options.out_dir)},
        "budget_mb": budget_mb, "margin_mb": settings.memory_margin_mb, "workers": settings.workers,
        "meter": {"kind": meter.kind, "description": meter.describe()}, "machine": machine_facts(),
    }
    try:
        port = free_port()
        env = server_env(options, settings, budget_mb, port, run_dir, api_key)
        server = Server(options.app, env, port, meter, options.out_dir / "server.log", clock,
                        control_socket=run_dir / "gunicorn.ctl")
        logger.info("server pid %d on %s, %s", server.proc.pid, server.url, meter.describe())
        sampler = Sampler(meter, server, clock)
        sampler_thread = threading.Thread(target=sampler.run, name="memory-sampler", daemon=True)
        sampler_thread.start()
        report["ready"] = server.wait_ready(options.boot_timeout_s, options.ready_timeout_s)
        report["boot_s"] = round(clock(), 2)
        time.sleep(IDLE_BEFORE_S)
        generator = workload.LoadGenerator(server.url, calls, ctx, concurrency=options.concurrency,
                                           duration_s=options.duration_s, max_requests=options.max_requests,
                                           timeout_s=options.request_timeout_s, seed=options.seed, clock=clock)
        report["workload_start_s"] = round(clock(), 3)
        logger.info("workload %s: %d clients for %g s (at most %d requests), server %s",
                    options.profile, options.concurrency, options.duration_s, options.max_requests, report["ready"])
        results = generator.run()
        report["workload_end_s"] = round(clock(), 3)
        time.sleep(COOLDOWN_S)
        report["alive_at_end"] = server.alive()
        report["registry"] = scrape_registry_counters(server.url) if server.alive() else None
        report["models"] = fetch_models(server.url) if server.alive() else None
        report["requests"] = [asdict(r) for r in results]
        report["kernel_peak_mb"] = meter.kernel_peak_mb()
        report["oom_kills"] = meter.oom_kills() if isinstance(meter, CgroupMeter) else None
    finally:
        with signals_deferred():  # a Ctrl-C during cleanup must not leave the server or the cgroup behind
            if sampler is not None:
                sampler.stop.set()
            if sampler_thread is not None:
                sampler_thread.join(timeout=2)
            if server is not None:
                report["server_exit_code"] = server.stop()
                report["events"] = [asdict(e) for e in sorted(server.events, key=lambda e: e.t_s)]
            if (run_dir / "state" / "costs.json").is_file():  # what the run measured, for the report
                shutil.copy(run_dir / "state" / "costs.json", options.out_dir / "costs.json")
            leftovers = [p.pid for p in meter.leftover()]
            if leftovers:  # e.g. a worker orphaned by a killed master: ours, stopped by pid
                logger.warning("stopping %d leftover process(es) of the server: %s", len(leftovers), leftovers)
            report["leftover_pids"] = leftovers
            meter.remove()
            shutil.rmtree(run_dir, ignore_errors=True)
            report["samples"] = sampler.samples if sampler is not None else []
            report["sampler_errors"] = sampler.errors if sampler is not None else 0
    return report
