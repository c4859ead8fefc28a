"""What workers coordinate besides measured costs: one admission at a time, and each one's reserved head-room.

Two workers that admit a model at the same moment read the same memory and both find it fits;
then both models' first requests need their activations at once and the kernel kills both (the
life-cycle budget check showed it with WORKERS=2 in 512 MB). So an admission and the build it
leads to hold a file lock in STATE_DIR (`admission()`), and each worker publishes the head-room
its loaded models keep for their next request (STATE_DIR/workers/<pid>.json, `publish()`), which
every other worker's admission counts as used (`reserved_mb()`). The lock is an flock: the kernel
drops it when its holder dies. A dead worker's file is removed by the master (Gunicorn's
child_exit hook, `forget()`) and ignored by readers meanwhile. Where STATE_DIR cannot be written,
each worker admits alone, as before, and says so once.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_NAME = "admission.lock"
WORKERS_DIR = "workers"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Peers:
    """This worker's view of the others sharing the budget, through files in the state folder."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._unwritable_logged = False
        self._published: dict[str, float] | None = None
        self._lock = threading.Lock()

    def _warn_once(self, exc: OSError) -> None:
        if not self._unwritable_logged:
            self._unwritable_logged = True
            logger.warning("cannot coordinate with other workers through %s (%s): each worker admits alone",
                           self.folder, exc)

    @contextmanager
    def admission(self) -> Iterator[None]:
        """Hold the service-wide admission lock (blocking) for the block; a no-op without a state folder."""
        if self.folder is None:
            yield
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock_file = open(self.folder / LOCK_NAME, "a")  # noqa: SIM115 - held across the yield
        except OSError as exc:
            self._warn_once(exc)
            yield
            return
        with lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def publish(self, reserved: dict[str, float]) -> None:
        """Say which models this worker holds and the head-room each keeps (MB); nothing held = no file."""
        if self.folder is None:
            return
        with self._lock:
            if reserved == self._published:
                return
            path = self.folder / WORKERS_DIR / f"{os.getpid()}.json"
            try:
                if not reserved:
                    path.unlink(missing_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}.tmp")
                    tmp.write_text(json.dumps({"pid": os.getpid(), "reserved_mb": reserved}), encoding="utf-8")
                    os.replace(tmp, path)  # atomic: readers see the old figures or the new ones
                self._published = dict(reserved)
            except OSError as exc:
                self._warn_once(exc)

    def reserved_mb(self) -> float:
        """Head-room the other live workers keep for their loaded models' next requests, MB."""
        if self.folder is None:
            return 0.0
        total = 0.0
        for path in (self.folder / WORKERS_DIR).glob("*.json") if (self.folder / WORKERS_DIR).is_dir() else ():
            try:
                pid = int(path.stem)
                if pid == os.getpid() or not _alive(pid):
                    continue
                total += sum(float(mb) for mb in json.loads(path.read_text(encoding="utf-8"))["reserved_mb"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # gone meanwhile, or half a file from a crash: not a reservation
        return total

    def forget(self, pid: int) -> None:
        """Remove a dead worker's reservations (the master calls this when a worker exits)."""
        if self.folder is not None:
            (self.folder / WORKERS_DIR / f"{pid}.json").unlink(missing_ok=True)
