"""The CPU this process may use: its cgroup's quota and its CPU affinity, read once at start.

A container sees every core of its host (`os.cpu_count()`) while its quota may be a tenth of one
(Render's free plan: 0.1 CPU). Thread pools sized to the host's cores then share that tenth and
are throttled together, each holding memory for its own buffers, so every pool in a worker
(ONNX Runtime, torch, OpenBLAS/OpenMP under numpy) is sized to the quota instead.

Read here: cgroup v2 `cpu.max` ("max 100000" or "<quota> <period>"), cgroup v1
`cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 = no limit), at the process's own cgroup and each
parent up to the mount (the smallest quota wins), and `os.sched_getaffinity`.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
# Pools read these when they start (numpy's OpenBLAS at import, OpenMP at its first parallel
# region, torch's intra-op default): they must be set before the first import of numpy or torch.
THREAD_POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                         "VECLIB_MAXIMUM_THREADS")


@dataclass(frozen=True)
class CpuQuota:
    """What the process may use: `quota_cpus` from its cgroup (None = no limit) and its affinity."""

    quota_cpus: float | None
    affinity_cpus: int
    source: str

    @property
    def cpus(self) -> float:
        """CPUs the process may keep busy: the smaller of the quota and the cores it may run on."""
        if self.quota_cpus is None:
            return float(self.affinity_cpus)
        return min(self.quota_cpus, float(self.affinity_cpus))

    def describe(self) -> dict:
        """Plain figures for /api/operator."""
        return {**asdict(self), "cpus": round(self.cpus, 3)}


def threads_for(cpus: float) -> int:
    """Threads that keep `cpus` busy without taking turns in it: its whole CPUs, at least 1.

    Rounded down: a 1.5 CPU quota runs 1 thread at full speed rather than 2 throttled in
    turns for a third of every period (the rule Go's automaxprocs follows).
    """
    return max(1, math.floor(cpus + 1e-9))


def _v2_quota(text: str) -> float | None:
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    return int(fields[0]) / int(fields[1] if len(fields) > 1 else 100_000)


def _v1_quota(folder: Path) -> float | None:
    quota = int((folder / "cpu.cfs_quota_us").read_text().strip())
    if quota <= 0:  # -1: no limit
        return None
    return quota / int((folder / "cpu.cfs_period_us").read_text().strip())


def _own_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """(v2 path, v1 cpu controller path) of this process from /proc/self/cgroup."""
    v2 = v1 = None
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _chain(mount: Path, path: str | None) -> list[Path]:
    """The process's cgroup folder and each parent up to the mount, those that exist.

    Inside a container the mount is often the container's own group while /proc/self/cgroup
    still names the host's path: then only the mount itself exists, and it is the right one.
    """
    parts = [p for p in (path or "/").split("/") if p]
    folders = [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
    return [f for f in folders if f.is_dir()]


def read_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP,
                   affinity: int | None = None) -> CpuQuota:
    """The quota of this process's cgroup (v2, else v1 cpu controller) and its affinity; never raises."""
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    v2_path, v1_path = _own_paths(proc_cgroup)
    found: list[tuple[float, Path]] = []
    v1_mount = next((root / name for name in V1_CPU_MOUNTS if (root / name).is_dir()), None)
    version = "v2" if (root / "cgroup.controllers").is_file() else "v1" if v1_mount else None
    try:
        if version == "v2":
            for folder in _chain(root, v2_path):
                if (folder / "cpu.max").is_file():
                    quota = _v2_quota((folder / "cpu.max").read_text())
                    if quota is not None:
                        found.append((quota, folder / "cpu.max"))
        elif version == "v1":
            for folder in _chain(v1_mount, v1_path):
                if (folder / "cpu.cfs_quota_us").is_file():
                    quota = _v1_quota(folder)
                    if quota is not None:
                        found.append((quota, folder / "cpu.cfs_quota_us"))
    except (OSError, ValueError, IndexError, ZeroDivisionError) as exc:
        logger.warning("could not read the CPU quota under %s (%s): threads follow the affinity", root, exc)
        return CpuQuota(None, affinity, "unreadable")
    if not found:
        return CpuQuota(None, affinity, f"cgroup {version}: no limit" if version else "no cpu cgroup")
    quota, where = min(found)
    return CpuQuota(round(quota, 4), affinity, f"cgroup {version} {where}")


@lru_cache(maxsize=1)
def cpu_quota() -> CpuQuota:
    """This process's quota, read once (a quota changed later is not followed)."""
    return read_cpu_quota()


def inference_threads(configured: int) -> int:
    """INFERENCE_THREADS as a count: the configured value, or for 0 the quota's whole CPUs (at least 1)."""
    return configured if configured > 0 else threads_for(cpu_quota().cpus)


def start_line(configured: int) -> str:
    """The start-up log's line (Gunicorn's master, the jobs worker): the quota found and the threads chosen."""
    quota = cpu_quota()
    found = "none" if quota.quota_cpus is None else f"{quota.quota_cpus:g}"
    return (f"cpu: quota {found} CPU ({quota.source}), affinity {quota.affinity_cpus} cores -> "
            f"{inference_threads(configured)} inference thread(s){' (INFERENCE_THREADS)' if configured else ''}")


def limit_thread_pools(threads: int) -> dict[str, str]:
    """Size numpy's BLAS and OpenMP pools (and torch's default) to `threads`; call before importing them.

    INFERENCE_THREADS is the one setting for every pool, so these variables are set, not merely
    defaulted; a pool already started keeps its size, hence the call in the Gunicorn master.
    """
    values = {name: str(threads) for name in THREAD_POOL_VARIABLES}
    os.environ.update(values)
    return values
