"""The folder prometheus_client's multiprocess mode writes to: one per Gunicorn master, never anyone else's.

The folder is `<base>/speech-api-metrics-<master pid>`, base being PROMETHEUS_MULTIPROC_DIR (the
operator's folder: only our own subfolders inside it are ever created or removed) or the system
temp folder. A master removes its folder when it exits; one that was hard-killed leaves it
behind, and the next master removes every such folder whose process is gone. Nothing here
imports prometheus_client: gunicorn_config.py runs it before any metric exists.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

PREFIX = "speech-api-metrics-"
_OURS = re.compile(rf"^{re.escape(PREFIX)}(\d+)$")


def folder_for(base: Path, pid: int) -> Path:
    return base / f"{PREFIX}{pid}"


def stale_folders(base: Path, alive: Callable[[int], bool]) -> list[Path]:
    """Our folders under `base` whose master is gone (pure but for listing `base`)."""
    if not base.is_dir():
        return []
    found = []
    for child in base.iterdir():
        match = _OURS.match(child.name)
        if match and child.is_dir() and not alive(int(match.group(1))):
            found.append(child)
    return sorted(found)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def prepare(base: Path, pid: int) -> Path:
    """Remove dead masters' folders under `base`, then give `pid` an empty folder of its own."""
    for stale in stale_folders(base, pid_alive):
        shutil.rmtree(stale, ignore_errors=True)
    own = folder_for(base, pid)
    shutil.rmtree(own, ignore_errors=True)  # a dead process's folder that had this pid
    own.mkdir(parents=True)
    return own
