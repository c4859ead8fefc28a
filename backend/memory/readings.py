"""Memory readings: the one place that measures memory (psutil and /proc, cgroup files).

Peaks are read and reset only here (`peak_rss_mb`, `reset_peak_rss`): the registry, the
benchmarks and the budget check all measure a load's or a request's peak the same way.

The budget is the instance's, not a process's, so admission reads the memory of the whole
service: the cgroup's working set when the service runs inside a memory-limited cgroup (what
the OOM killer judges, as on Render), otherwise the summed PSS of the Gunicorn process tree:
pages shared by the master and its workers (preload, libraries, mapped weights) are split
between them, so each is counted once, as the kernel charges it. Summed RSS would count the
master's pages once more per worker: with it a restarted worker saw the master's growth twice
and refused a model that fitted.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

MB = 1024 * 1024
_UNLIMITED_BYTES = 1 << 60  # cgroup v1 reports "no limit" as a huge page-aligned number
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_peak_reset_failure_logged = False


_STATM = Path("/proc/self/statm")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of one process (this one by default: one read of /proc/self/statm), MB."""
    if pid is None:
        try:
            return int(_STATM.read_text().split()[1]) * _PAGE_BYTES / MB
        except OSError:  # not Linux
            pass
    return psutil.Process(pid).memory_info().rss / MB


def peak_rss_mb() -> float | None:
    """This process's peak resident set size (VmHWM) since start or the last reset, MB; None where unknown."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the peak-RSS mark to the current RSS, so the next peak_rss_mb() is what came after.

    Writing 5 to clear_refs resets VmHWM (Linux >= 4.0). Returns False when it cannot (another
    kernel, a locked-down /proc): then a later peak is the process's all-time high, not one load's
    or request's, and callers must not record it as such. Said once, as a warning.
    """
    global _peak_reset_failure_logged
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError as exc:
        if not _peak_reset_failure_logged:
            _peak_reset_failure_logged = True
            logger.warning("cannot reset the peak-RSS mark (%s: %s): load and request peaks go unmeasured; "
                           "costs fall back to RSS after load", _CLEAR_REFS, exc)
        return False


def anon_mb() -> float:
    """Anonymous resident memory of this process (heap, not file-backed weights), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return rss_mb()


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages split between the processes sharing them, MB.

    Where smaps_rollup cannot be read (kernels before 4.14, another user's process) the
    process's RSS stands in: an over-count, never an under-count. A process gone counts 0.
    """
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except ProcessLookupError:
        return 0.0
    except OSError:
        pass
    try:
        return rss_mb(pid)
    except psutil.NoSuchProcess:
        return 0.0


def tree_pids(root_pid: int) -> list[int]:
    """The root process and all its live descendants."""
    try:
        root = psutil.Process(root_pid)
        return [root_pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def tree_pss_mb(root_pid: int) -> float:
    """Summed PSS of a process tree, MB: its shared pages counted once in all."""
    return sum(pss_mb(pid) for pid in tree_pids(root_pid))


@dataclass(frozen=True)
class CgroupMemory:
    """Where a process's memory cgroup is and what it allows."""

    version: int
    path: Path

    def _read(self, name: str) -> str:
        return (self.path / name).read_text().strip()

    def limit_mb(self) -> float | None:
        raw = self._read("memory.max" if self.version == 2 else "memory.limit_in_bytes")
        if raw == "max" or int(raw) >= _UNLIMITED_BYTES:
            return None
        return int(raw) / MB

    def working_set_mb(self) -> float:
        """Usage minus inactive file cache: what cannot be reclaimed without swapping (kubelet's measure)."""
        usage = int(self._read("memory.current" if self.version == 2 else "memory.usage_in_bytes"))
        stat = dict(line.split() for line in self._read("memory.stat").splitlines())
        inactive = int(stat.get("inactive_file" if self.version == 2 else "total_inactive_file", 0))
        return max(0, usage - inactive) / MB


def own_cgroup(pid: int | None = None) -> CgroupMemory | None:
    """The memory cgroup of a process, v2 or v1, if its files are readable."""
    try:
        lines = Path(f"/proc/{pid or 'self'}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            candidate = _CGROUP_ROOT / "memory" / path.lstrip("/")
            if (candidate / "memory.limit_in_bytes").exists():
                return CgroupMemory(1, candidate)
        if hierarchy == "0" and controllers == "":
            for base in (_CGROUP_ROOT, _CGROUP_ROOT / "unified"):
                candidate = base / path.lstrip("/")
                if (candidate / "memory.max").exists():
                    return CgroupMemory(2, candidate)
    return None


class ServiceMemory:
    """Reads how much memory the whole service uses, from the best source this machine offers."""

    def __init__(self, root_pid: int | None = None) -> None:
        self.root_pid = root_pid or os.getpid()
        cgroup = own_cgroup()
        self.cgroup = cgroup if cgroup is not None and cgroup.limit_mb() is not None else None

    @property
    def source(self) -> str:
        return f"cgroup-v{self.cgroup.version}" if self.cgroup else "process-tree-pss"

    def limit_mb(self) -> float | None:
        return self.cgroup.limit_mb() if self.cgroup else None

    def used_mb(self) -> float:
        if self.cgroup is not None:
            try:
                return self.cgroup.working_set_mb()
            except OSError:
                logger.warning("cgroup memory files unreadable; falling back to the process tree's PSS")
                self.cgroup = None
        return tree_pss_mb(self.root_pid)


_libc = None


def malloc_trim() -> bool:
    """Return freed heap pages to the OS (glibc keeps them otherwise); False where not glibc."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name or "libc.so.6")
            _libc.malloc_trim  # noqa: B018 - probe: musl has no malloc_trim
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    return bool(_libc.malloc_trim(0))


def release_memory() -> None:
    """Collect cycles and hand freed heap back to the OS."""
    gc.collect()
    malloc_trim()
