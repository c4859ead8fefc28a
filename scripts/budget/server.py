"""The server under test: real Gunicorn started inside the meter's cgroup, its log watched for events.

The log is read line by line as it arrives and every line the registry or Gunicorn writes about
model lifetime and worker life becomes a timestamped Event (what the plot marks). The process is
started in its own session, so a Ctrl-C in the terminal reaches only the budget check, which then
stops the server by pid.
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from scripts.budget.cgroup import CgroupMeter, ProcessTreeMeter

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 20.0
SETPRIV = shutil.which("setpriv")  # util-linux; without it a SIGKILLed check orphans the server

# (event kind, pattern); the registry's lines are key=value (backend/registry), Gunicorn's are its own.
LOG_EVENTS: list[tuple[str, re.Pattern[str]]] = [
    ("load", re.compile(r"event=model_loaded model=(?P<model>\S+)")),
    ("unload", re.compile(r"event=model_unloaded model=(?P<model>\S+) reason=(?P<reason>\S+)")),
    ("refuse", re.compile(r"event=model_refused model=(?P<model>\S+)")),
    ("worker_boot", re.compile(r"Booting worker with pid: (?P<pid>\d+)")),
    ("worker_killed", re.compile(r"Worker \(pid:(?P<pid>\d+)\) was sent (?P<signal>SIG\w+)")),
    ("worker_timeout", re.compile(r"WORKER TIMEOUT \(pid:(?P<pid>\d+)\)")),
    ("worker_recycle", re.compile(r"Autorestarting worker after current request")),
    # the registry asking for a fresh worker because this one holds memory it cannot give back
    ("worker_self_recycle", re.compile(r"event=worker_recycle pid=(?P<pid>\d+) reason=(?P<reason>\S+) model=(?P<model>\S+)")),
    ("worker_exit_code", re.compile(r"Worker \(pid:(?P<pid>\d+)\) exited with code (?P<code>\d+)")),
]


@dataclass
class Event:
    t_s: float
    kind: str  # load, unload, evict, refuse, worker_boot, worker_killed, worker_timeout, worker_recycle, oom_kill, ...
    model: str | None = None
    detail: str = ""


def parse_event(line: str, t_s: float) -> Event | None:
    for kind, pattern in LOG_EVENTS:
        match = pattern.search(line)
        if match is None:
            continue
        facts = match.groupdict()
        if kind == "unload" and facts.get("reason") == "evicted":
            kind = "evict"
        detail = " ".join(f"{k}={v}" for k, v in facts.items() if k != "model")
        return Event(t_s, kind, facts.get("model"), detail)
    return None


class Server:
    """`gunicorn -c gunicorn_config.py --bind 127.0.0.1:PORT APP`, inside the meter (loopback only)."""

    def __init__(self, app: str, env: dict[str, str], port: int, meter: CgroupMeter | ProcessTreeMeter,
                 log_path: Path, clock: Callable[[], float], control_socket: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.meter, self.clock, self.log_path = meter, clock, log_path
        self.events: list[Event] = []
        self._events_lock = threading.Lock()
        # Gunicorn 27's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl),
        # shared with any other Gunicorn on the machine: give this one its own.
        argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "--bind", f"127.0.0.1:{port}",
                "--control-socket", str(control_socket), app]
        # If the budget check itself is SIGKILLed, no finally runs: the kernel then sends the master
        # SIGTERM (parent-death signal, kept across exec) and it stops its workers.
        if SETPRIV is not None:
            argv = [SETPRIV, "--pdeathsig", "TERM", *argv]
        self._log_file = open(log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(meter.wrap(argv), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                     start_new_session=True)
        meter.attach(self.proc.pid)  # the shell exec'd Gunicorn: same pid, the master
        self._reader = threading.Thread(target=self._read_log, name="server-log", daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log_file.write(line)
            event = parse_event(line, self.clock())
            if event is not None:
                self.add_event(event)

    def add_event(self, event: Event) -> None:
        with self._events_lock:
            self.events.append(event)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout_s: float, ready_timeout_s: float) -> str:
        """Wait for /health, then (bounded) for /ready to stop saying "starting" (pinned models loaded).

        Returns /ready's status: "ready", "unservable" (an enabled model can never be served, e.g.
        its files are missing: the workload then shows what its requests get), or "not ready" when
        pinned models were still loading at the deadline. Raises when /health never answers.
        """
        deadline = time.monotonic() + timeout_s
        path = "/health"
        while True:
            if not self.alive():
                raise RuntimeError(f"server exited with code {self.proc.returncode} before answering; see {self.log_path}")
            try:
                response = requests.get(self.url + path, timeout=2)
                if path == "/health" and response.status_code == 200:
                    path, deadline = "/ready", time.monotonic() + ready_timeout_s
                    continue
                if path == "/ready" and response.status_code in (200, 503):
                    status = response.json().get("status")
                    if status in ("ready", "unservable"):
                        return status
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                if path == "/ready":
                    return "not ready"
                raise TimeoutError(f"server did not answer /health within {timeout_s:.0f} s; see {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM the master (graceful), SIGKILL it after STOP_TIMEOUT_S; returns its exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log_file.close()
        return self.proc.returncode

    def worker_pids(self) -> list[int]:
        try:
            return [child.pid for child in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []
