"""Where the budget check runs the server: a memory cgroup limited to the budget, or the process tree.

`make_meter(budget_mb)` creates a cgroup v2 group (memory.max, memory.swap.max) or a v1 group
(memory.limit_in_bytes, memory.memsw.limit_in_bytes), whichever this machine offers and lets us
write, so exceeding the budget gets the server OOM-killed exactly as on the instance. A process is
moved in by a shell that writes its own pid to cgroup.procs and then execs the server, so the
Gunicorn master and every worker it forks are inside from their first byte. Where no cgroup can be
made, ProcessTreeMeter samples the summed RSS and PSS of the server's process tree instead: nothing
enforces the budget then, and OOM kills cannot be counted.

Every reading is in MB (MiB). "working set" is usage minus inactive file cache, the figure the
server's registry budgets against (backend.memory.readings.CgroupMemory).
"""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from backend.memory import readings

logger = logging.getLogger(__name__)

MB = readings.MB
CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = CGROUP_ROOT / "memory"
REMOVE_TIMEOUT_S = 10.0


class CgroupUnavailable(Exception):
    """No memory cgroup can be made here (no controller, not writable, not root)."""


@dataclass
class Reading:
    """One sample of the server's memory, MB; None where this meter cannot tell."""

    usage_mb: float
    working_set_mb: float
    rss_mb: float
    pss_mb: float | None = None
    oom_kills: int | None = None


@dataclass
class ProcessTreeMeter:
    """Fallback: no limit, memory summed over the server's process tree (RSS, and PSS)."""

    reason: str = "no memory cgroup"
    root_pid: int | None = None
    kind: str = "process-tree"
    path: Path | None = None
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def wrap(self, argv: list[str]) -> list[str]:
        return argv

    def attach(self, pid: int) -> None:
        self.root_pid = pid

    def pids(self) -> list[int]:
        pids = readings.tree_pids(self.root_pid) if self.root_pid else []
        for pid in pids:
            if pid not in self.seen:
                try:
                    self.seen[pid] = psutil.Process(pid)
                except psutil.NoSuchProcess:
                    continue
        return pids

    def read(self) -> Reading:
        rss, pss = 0.0, 0.0
        for pid in self.pids():
            try:
                rss += psutil.Process(pid).memory_info().rss / MB
            except psutil.NoSuchProcess:
                continue
            pss += readings.pss_mb(pid)
        # Without a cgroup, PSS is the closest to what a cgroup would charge (shared pages split).
        return Reading(usage_mb=rss, working_set_mb=pss, rss_mb=rss, pss_mb=pss)

    def kernel_peak_mb(self) -> float | None:
        return None

    def describe(self) -> str:
        return f"no cgroup ({self.reason}): memory is the process tree's summed PSS (RSS also shown); " \
               "nothing enforces the budget and OOM kills cannot be counted"

    def leftover(self) -> list[psutil.Process]:
        """Processes of the tree still alive (the same process: psutil checks its start time)."""
        return [p for p in self.seen.values() if p.is_running()]

    def remove(self) -> None:
        _kill_and_wait(self.leftover())


@dataclass
class CgroupMeter:
    """A memory cgroup (v1 or v2) limited to the budget, swap off; created here, removed here."""

    version: int
    path: Path
    limit_mb: float

    @property
    def kind(self) -> str:
        return f"cgroup-v{self.version}"

    def wrap(self, argv: list[str]) -> list[str]:
        """Argv that enters the cgroup before exec, so the master and all its workers are inside."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def attach(self, pid: int) -> None:
        pass  # already inside by wrap()

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def _stat(self) -> dict[str, int]:
        return {key: int(value) for key, value in (line.split() for line in self._read("memory.stat").splitlines())}

    def pids(self) -> list[int]:
        try:
            return [int(pid) for pid in self._read("cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def read(self) -> Reading:
        if self.version == 2:
            usage = int(self._read("memory.current"))
            inactive = self._stat().get("inactive_file", 0)
        else:
            usage = int(self._read("memory.usage_in_bytes"))
            inactive = self._stat().get("total_inactive_file", 0)
        rss = 0
        for pid in self.pids():
            try:
                rss += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return Reading(usage_mb=usage / MB, working_set_mb=max(0, usage - inactive) / MB, rss_mb=rss / MB,
                       oom_kills=self.oom_kills())

    def oom_kills(self) -> int | None:
        """Processes the kernel OOM-killed in this group (v1 memory.oom_control, v2 memory.events)."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in self._read(name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return None  # v1 kernels before 4.13 do not count kills

    def kernel_peak_mb(self) -> float | None:
        """Peak usage as the kernel recorded it (page cache included); None where not offered."""
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int(self._read(name)) / MB
        except (FileNotFoundError, ValueError):
            return None

    def describe(self) -> str:
        swap = "memory.swap.max=0" if self.version == 2 else (
            "memsw limit = limit" if (self.path / "memory.memsw.limit_in_bytes").exists() else "no memsw file (swap not limited)")
        return f"{self.kind} {self.path} limit {self.limit_mb:.0f} MB, {swap}"

    def leftover(self) -> list[psutil.Process]:
        procs = []
        for pid in self.pids():
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        return procs

    def remove(self) -> None:
        """Stop whatever is still inside (only what we started can be inside), then rmdir."""
        if not self.path.exists():
            return
        _kill_and_wait(self.leftover())
        deadline = time.monotonic() + REMOVE_TIMEOUT_S
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:  # EBUSY while the last task exits
                if time.monotonic() > deadline:
                    logger.error("could not remove cgroup %s: %s (pids %s)", self.path, exc, self.pids())
                    raise
                _kill_and_wait(self.leftover())
                time.sleep(0.1)


def _kill_and_wait(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(procs, timeout=5)


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _create_v2(budget_bytes: int, name: str) -> CgroupMeter:
    root = CGROUP_ROOT
    if "memory" not in (root / "cgroup.controllers").read_text().split():
        raise CgroupUnavailable("cgroup v2 without the memory controller")
    subtree = root / "cgroup.subtree_control"
    if "memory" not in subtree.read_text().split():
        _write(subtree, "+memory")
    path = root / name
    path.mkdir()
    meter = CgroupMeter(2, path, budget_bytes / MB)
    try:
        _write(path / "memory.max", str(budget_bytes))
        if (path / "memory.swap.max").exists():
            _write(path / "memory.swap.max", "0")
    except OSError:
        meter.remove()
        raise
    return meter


def _create_v1(budget_bytes: int, name: str) -> CgroupMeter:
    path = V1_ROOT / name
    path.mkdir()
    meter = CgroupMeter(1, path, budget_bytes / MB)
    try:
        _write(path / "memory.limit_in_bytes", str(budget_bytes))
        if (path / "memory.memsw.limit_in_bytes").exists():  # memory+swap = memory: no swap
            _write(path / "memory.memsw.limit_in_bytes", str(budget_bytes))
        if (path / "memory.swappiness").exists():
            _write(path / "memory.swappiness", "0")
        _write(path / "memory.oom_control", "0")  # OOM killer on, as on the instance
    except OSError:
        meter.remove()
        raise
    return meter


def make_meter(budget_mb: float, *, use_cgroup: bool = True, name: str | None = None) -> CgroupMeter | ProcessTreeMeter:
    """A cgroup limited to `budget_mb` (v2 preferred, then v1), else the process-tree fallback."""
    if not use_cgroup:
        return ProcessTreeMeter(reason="--no-cgroup given")
    name = name or f"budget-check-{os.getpid()}-{time.time_ns() % 10**9}"
    budget_bytes = int(budget_mb * MB)
    reasons = []
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        try:
            return _create_v2(budget_bytes, name)
        except (OSError, CgroupUnavailable) as exc:
            reasons.append(f"v2: {exc}")
    if (V1_ROOT / "memory.limit_in_bytes").exists():
        try:
            return _create_v1(budget_bytes, name)
        except OSError as exc:
            reasons.append(f"v1: {exc}")
    else:
        reasons.append("no cgroup v1 memory controller mounted")
    return ProcessTreeMeter(reason="; ".join(reasons))
