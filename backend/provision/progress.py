"""The progress file of background provisioning: written by its process, read by the server's answers.

One JSON file per model, STATE_DIR/provisioning/<model>.json: `state` (running, done, failed, skipped),
`stage`, `percent`, `pid`, `started_at`, `updated_at` and, when it did not finish, `reason` and `fix`.
Written whole and renamed into place, so a reader sees the old or the new file, never half. A
`running` file whose process is gone (killed, the box restarted) reads as `interrupted`: the next start
provisions again. `provisioning(settings, model)` is what /ready, /api/models, /api/operator and the
page show while a model is being provisioned; it reads one small file and imports nothing.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from config import Settings

STATES = ("running", "done", "failed", "skipped", "interrupted")
SHOWN_FIELDS = ("state", "stage", "percent", "started_at", "updated_at", "reason", "fix")


def folder(settings: Settings) -> Path:
    return settings.state_root / "provisioning"


def path_for(settings: Settings, model: str) -> Path:
    return folder(settings) / f"{model}.json"


def stamp(settings: Settings) -> tuple[tuple[str, int, int], ...]:
    """What the progress files are now, cheaply: (name, inode, mtime ns) of each. Every write()
    renames a new file into place (a new inode), so a cached answer keyed on this is checked again
    when provisioning starts, moves on or ends (backend.registry.readiness.CachedAvailability)."""
    try:
        with os.scandir(folder(settings)) as entries:
            return tuple(sorted((entry.name, entry.inode(), entry.stat().st_mtime_ns) for entry in entries
                                if entry.name.endswith(".json")))
    except OSError:
        return ()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def write(settings: Settings, model: str, **fields: Any) -> dict[str, Any]:
    """Replace the model's progress file with `fields` (plus pid and updated_at); returns what was written."""
    target = path_for(settings, model)
    target.parent.mkdir(parents=True, exist_ok=True)
    record = {"model": model, "pid": os.getpid(), "updated_at": round(time.time(), 1), **fields}
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
    tmp.replace(target)
    return record


def read(settings: Settings, model: str) -> dict[str, Any] | None:
    """The model's progress record, `interrupted` when it says running but its process is gone; None if none."""
    try:
        record = json.loads(path_for(settings, model).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("state") == "running" and not pid_alive(int(record.get("pid") or 0)):
        record = {**record, "state": "interrupted", "reason": "its process ended before it finished"}
    return record


def read_all(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every model's progress record, by model name."""
    found = {}
    for path in sorted(folder(settings).glob("*.json")) if folder(settings).is_dir() else []:
        record = read(settings, path.stem)
        if record is not None:
            found[path.stem] = record
    return found


def provisioning(settings: Settings, model: str) -> dict[str, Any] | None:
    """{stage, percent, ...} while a model is being provisioned beside the server; None otherwise."""
    record = read(settings, model)
    if record is None or record.get("state") != "running":
        return None
    return {key: record[key] for key in SHOWN_FIELDS if key in record}


def annotate(settings: Settings, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Model rows (the registry's snapshot) with `provisioning`: {stage, percent, ...} while provisioned, else None."""
    for row in rows:
        row["provisioning"] = None if row.get("servable") else provisioning(settings, row["name"])
    return rows


def last_outcome(settings: Settings, model: str) -> dict[str, Any] | None:
    """The last finished provisioning of a model that did not succeed (failed, skipped, interrupted), or None."""
    record = read(settings, model)
    if record is None or record.get("state") in ("running", "done"):
        return None
    return {key: record[key] for key in SHOWN_FIELDS if key in record}
