"""The budget check end to end: real Gunicorn, fake-memory models, a real cgroup (or the fallback)."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from config import Settings
from scripts.budget.cgroup import make_meter
from tests.conftest import ROOT

BUDGET_MB = 300
FAKE_APP = "tests.budget_app:create_app()"


# Three models that cannot all stay loaded under the 252 MB admission limit (300 - 48 margin), any
# two of which can. Without a cgroup the server budgets against summed RSS, which counts the
# master's pages shared with the worker twice (~35 MB more here), so the fallback needs smaller ones.
EVICTING = "tts=80,language=60,ai_voice=70"
SMALL = "tts=50,language=30,ai_voice=40"


@pytest.fixture(scope="module")
def meter_kind() -> str:
    """cgroup-v1, cgroup-v2 or process-tree: what the budget check gets on this machine."""
    meter = make_meter(64)
    meter.remove()
    return meter.kind


def budget_check(out: Path, *args: str, duration_s: float = 3) -> subprocess.CompletedProcess:
    command = [sys.executable, "scripts/budget_check.py", "--app", FAKE_APP, "--profile", "fake",
               "--budget-mb", str(BUDGET_MB), "--duration", str(duration_s), "--concurrency", "3",
               "--boot-timeout", "60", "--ready-timeout", "20", "--out", str(out), *args]
    return subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=150)


def _env() -> dict[str, str]:
    """This environment without any setting: the configuration is only what the test gives."""
    return {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def _assert_cleaned_up(report: dict) -> None:
    assert report["leftover_pids"] == []
    if report["meter"]["kind"] != "process-tree":
        cgroup = Path(report["meter"]["description"].split()[1])
        assert cgroup.name.startswith("budget-check-") and not cgroup.exists()
    workers = [int(e["detail"].removeprefix("pid=")) for e in report["events"] if e["kind"] == "worker_boot"]
    assert workers and not any(psutil.pid_exists(pid) for pid in workers)


def test_fits_and_refused_verdicts(tmp_path, meter_kind):
    meter = meter_kind
    fitting = EVICTING if meter != "process-tree" else SMALL
    matrix = tmp_path / "matrix.txt"
    matrix.write_text(
        # THREADS=1: only the model being served is in use, so the other two can always be evicted;
        # with 2 threads two models in use can block the third (a legitimate 503 that flakes this row)
        f"fits | THREADS=1 FAKE_MODELS_MB={fitting}\n"
        "# ai_voice declares its real 400 MB: the registry must refuse it, never build it\n"
        "refused | FAKE_MODELS_MB=tts=80,language=60,ai_voice=400\n")
    run = budget_check(tmp_path / "out", "--matrix", str(matrix))
    assert run.returncode == 1, run.stdout + run.stderr  # one configuration does not fit
    fits, refused = _report(tmp_path / "out" / "01-fits"), _report(tmp_path / "out" / "02-refused")

    s = fits["summary"]
    assert fits["verdict"] == f"FITS in {BUDGET_MB} MB (peak {s['peak_mb']} MB)" + (
        " [no cgroup: process-tree PSS, budget not enforced]" if meter == "process-tree" else "")
    assert s["meter"] == meter
    assert s["samples"] >= 40  # every 100 ms over boot, 1 s idle, 3 s of workload, 2 s cooldown
    assert 0 < s["idle_mb"] < s["peak_mb"] <= BUDGET_MB
    assert s["oom_kills"] == (None if meter == "process-tree" else 0)
    # A few 503s are allowed (the verdict's 5%): a third model cannot evict two that are in use.
    assert s["unexpected_restarts"] == 0 and s["no_response"] == 0
    assert s["models_loaded"] >= 3
    if meter != "process-tree":
        assert s["models_evicted"] >= 1  # 210 MB of models cannot all stay loaded
    assert {"200", "400", "401", "404"} <= set(s["statuses"])  # good calls and each kind of bad input
    assert s["endpoints"]["fake_tts"]["p95_s"] >= s["endpoints"]["fake_tts"]["p50_s"] > 0
    assert (tmp_path / "out" / "01-fits" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "FITS in 300 MB" in (tmp_path / "out" / "01-fits" / "report.txt").read_text()
    _assert_cleaned_up(fits)

    s = refused["summary"]
    assert refused["verdict"].startswith("DOES NOT FIT: model ai_voice was refused")
    assert s["oom_kills"] == (None if meter == "process-tree" else 0)  # refused, not killed
    assert s["unexpected_restarts"] == 0 and s["no_response"] == 0
    assert s["registry"]["loads"].get("ai_voice", 0) == 0 and s["registry"]["refusals"]["ai_voice"] >= 1
    assert s["endpoints"]["fake_ai_voice"]["statuses"] == {"503": s["endpoints"]["fake_ai_voice"]["count"]}
    assert s["refused_budget"] >= s["endpoints"]["fake_ai_voice"]["count"]
    assert s["peak_mb"] < BUDGET_MB
    _assert_cleaned_up(refused)

    table = (tmp_path / "out" / "matrix.md").read_text()
    assert table.count("\n| fits |") == 1 and "| refused |" in table and "DOES NOT FIT" in table


def test_sigterm_stops_the_server_and_removes_the_cgroup(tmp_path, meter_kind):
    command = [sys.executable, "scripts/budget_check.py", "--app", FAKE_APP, "--profile", "fake",
               "--budget-mb", str(BUDGET_MB), "--duration", "60", "--out", str(tmp_path)]
    proc = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    server_pid = cgroup = None
    try:
        while True:
            line = lines.get(timeout=60)
            if "server pid" in line:
                server_pid = int(line.split("server pid ")[1].split()[0])
                cgroup = next((Path(w) for w in line.split() if w.startswith("/sys/fs/cgroup")), None)
            if line.split(":", 1)[-1].strip().startswith("workload"):
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert server_pid is not None and not psutil.pid_exists(server_pid)
    assert (cgroup is None) == (meter_kind == "process-tree")
    if cgroup is not None:
        assert not cgroup.exists()


@pytest.mark.slow
def test_under_estimated_model_is_oom_killed_and_reported(tmp_path, meter_kind):
    if meter_kind == "process-tree":
        pytest.skip("no memory cgroup on this machine: nothing can be OOM-killed")
    run = budget_check(tmp_path, "FAKE_MODELS_MB=tts=80,language=60,ai_voice=400:50", duration_s=6)
    assert run.returncode == 1, run.stdout + run.stderr
    s = _report(tmp_path)["summary"]
    assert s["oom_kills"] >= 1 and s["unexpected_restarts"] >= 1
    assert _report(tmp_path)["verdict"].startswith("DOES NOT FIT: ")
    assert any(e["kind"] == "oom_kill" for e in _report(tmp_path)["events"])


@pytest.mark.slow
def test_fallback_without_cgroup_samples_the_process_tree(tmp_path):
    # THREADS=1, as in test_fits_and_refused_verdicts: two models in use could block the third (a legitimate 503)
    run = budget_check(tmp_path, "--no-cgroup", "THREADS=1", f"FAKE_MODELS_MB={SMALL}")
    report = _report(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    s = report["summary"]
    assert s["meter"] == "process-tree" and s["oom_kills"] is None
    assert all(sample["pss_mb"] is not None for sample in report["samples"])
    assert report["verdict"].endswith("[no cgroup: process-tree PSS, budget not enforced]")
    assert any("no cgroup (--no-cgroup given)" in w for w in s["warnings"])


def test_log_lines_become_events():
    from scripts.budget.server import parse_event

    lines = {
        "INFO [7] backend.registry: event=model_loaded model=tts load_s=0.1": ("load", "tts"),
        "INFO [7] backend.registry: event=model_unloaded model=language reason=evicted rss_before_mb=1": ("evict", "language"),
        "INFO [7] backend.registry: event=model_unloaded model=tts reason=ttl rss_before_mb=1": ("unload", "tts"),
        "WARNING [7] backend.registry: event=model_refused model=ai_voice needed_mb=400": ("refuse", "ai_voice"),
        "[x] [5] [INFO] Booting worker with pid: 1234": ("worker_boot", None),
        "[x] [5] [ERROR] Worker (pid:1234) was sent SIGKILL! Perhaps out of memory?": ("worker_killed", None),
        "[x] [5] [INFO] Autorestarting worker after current request.": ("worker_recycle", None),
    }
    for line, (kind, model) in lines.items():
        event = parse_event(line, 1.5)
        assert event is not None and (event.kind, event.model, event.t_s) == (kind, model, 1.5), line
    assert parse_event('127.0.0.1 "GET /health HTTP/1.1" 200 40 1ms', 0) is None


def test_matrix_file_rows(tmp_path):
    from scripts.budget_check import read_matrix

    matrix = tmp_path / "m.txt"
    matrix.write_text("# comment\n\nonnx | BACKEND=onnx WORKERS=2  # trailing\nPRELOAD=true\n")
    assert read_matrix(matrix) == [("onnx", {"BACKEND": "onnx", "WORKERS": "2"}), ("PRELOAD=true", {"PRELOAD": "true"})]
    matrix.write_text("bad | WORKERS\n")
    with pytest.raises(ValueError, match="not a KEY=VALUE"):
        read_matrix(matrix)
