"""The budget check leaves nothing behind: a signal during its cleanup waits, a SIGKILL takes the server along."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from config import Settings
from scripts.budget import check
from scripts.budget.server import SETPRIV, Server
from tests.conftest import ROOT

FAKE_APP = "tests.budget_app:create_app()"
SMALL_MODELS = {"FAKE_MODELS_MB": "tts=20,language=20,ai_voice=20"}


@pytest.fixture
def clean_env(monkeypatch):
    """No setting from this environment: the configuration is only what the test gives."""
    for key in list(os.environ):
        if key.lower() in Settings.model_fields:
            monkeypatch.delenv(key)


def test_a_signal_during_cleanup_is_held_until_the_server_and_cgroup_are_gone(tmp_path, monkeypatch, clean_env):
    stopped: dict[str, object] = {}
    real_stop = Server.stop
    # What this process had before (SIG_IGN when started in the background by a non-interactive shell).
    handler_before = signal.getsignal(signal.SIGINT)

    def stop_while_the_operator_presses_ctrl_c(server: Server) -> int | None:
        stopped["pid"], stopped["meter"] = server.proc.pid, server.meter
        os.kill(os.getpid(), signal.SIGINT)  # lands in the middle of the cleanup
        time.sleep(0.1)
        return real_stop(server)

    monkeypatch.setattr(Server, "stop", stop_while_the_operator_presses_ctrl_c)
    monkeypatch.setattr(check, "IDLE_BEFORE_S", 0.0)  # only the cleanup matters here
    monkeypatch.setattr(check, "COOLDOWN_S", 0.0)
    options = check.CheckOptions(env=SMALL_MODELS, app=FAKE_APP, profile="fake", budget_mb=300, duration_s=0.5,
                                 concurrency=1, boot_timeout_s=60, out_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt, match="SIGINT"):
        check.run_check(options)
    assert not psutil.pid_exists(stopped["pid"])
    meter = stopped["meter"]
    assert meter.kind == "process-tree" or not meter.path.exists()
    assert signal.getsignal(signal.SIGINT) is handler_before  # handlers restored


@pytest.mark.slow
@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is not installed: no parent-death signal")
def test_a_sigkilled_check_takes_its_server_along(tmp_path, clean_env):
    command = [sys.executable, "scripts/budget_check.py", "--app", FAKE_APP, "--profile", "fake", "--budget-mb", "300",
               "--duration", "60", "--out", str(tmp_path), "FAKE_MODELS_MB=tts=20,language=20,ai_voice=20"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("workload fake" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.1)
    started = next(line for line in lines if "server pid" in line)
    server = psutil.Process(int(started.split("server pid ")[1].split()[0]))
    cgroup = next((Path(word) for word in started.split() if word.startswith("/sys/fs/cgroup")), None)
    workers = server.children()
    proc.kill()  # no finally, no signal handler: only the parent-death signal is left
    proc.wait(timeout=10)
    reader.join(timeout=5)
    proc.stderr.close()
    gone, alive = psutil.wait_procs([server, *workers], timeout=30)
    try:
        assert alive == []
    finally:
        for leftover in alive:  # the test started them: stop them by pid
            leftover.kill()
        if cgroup is not None:  # an empty group is all a SIGKILL can leave; the test made it, the test removes it
            deadline = time.monotonic() + 10
            while cgroup.exists() and cgroup.joinpath("cgroup.procs").read_text().strip() and time.monotonic() < deadline:
                time.sleep(0.1)
            cgroup.rmdir()
