"""The CPU quota read from fake cgroup trees (v1, v2, no limit, fractional, nested), and the threads chosen from it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend import cpu_quota
from backend.cpu_quota import CpuQuota, inference_threads, limit_thread_pools, read_cpu_quota, threads_for


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_tree(tmp_path: Path, cpu_max: dict[str, str], own: str = "/") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    for folder, text in cpu_max.items():
        write(root / folder.strip("/") / "cpu.max", text)
    proc = tmp_path / "proc-cgroup"
    write(proc, f"0::{own}\n")
    return root, proc


def v1_tree(tmp_path: Path, quotas: dict[str, tuple[int, int]], own: str = "/", mount: str = "cpu,cpuacct") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    (root / mount).mkdir(parents=True)
    (root / "memory").mkdir()
    for folder, (quota, period) in quotas.items():
        write(root / mount / folder.strip("/") / "cpu.cfs_quota_us", f"{quota}\n")
        write(root / mount / folder.strip("/") / "cpu.cfs_period_us", f"{period}\n")
    proc = tmp_path / "proc-cgroup"
    write(proc, f"12:memory:/other\n4:cpu,cpuacct:{own}\n0::/\n")
    return root, proc


def test_v2_fractional_quota(tmp_path):
    root, proc = v2_tree(tmp_path, {"/": "10000 100000\n"})
    quota = read_cpu_quota(root, proc, affinity=16)
    assert quota.quota_cpus == 0.1 and quota.cpus == 0.1
    assert "v2" in quota.source and quota.source.endswith("cpu.max")


def test_v2_no_limit_follows_the_affinity(tmp_path):
    root, proc = v2_tree(tmp_path, {"/": "max 100000\n"})
    quota = read_cpu_quota(root, proc, affinity=6)
    assert quota.quota_cpus is None and quota.cpus == 6.0
    assert quota.source == "cgroup v2: no limit"


def test_v2_the_smallest_quota_on_the_way_up_wins(tmp_path):
    root, proc = v2_tree(tmp_path, {"/": "max 100000\n", "/app.slice": "50000 100000\n",
                                    "/app.slice/web.scope": "150000 100000\n"}, own="/app.slice/web.scope")
    quota = read_cpu_quota(root, proc, affinity=8)
    assert quota.quota_cpus == 0.5
    assert "app.slice" in quota.source and "web.scope" not in quota.source


def test_v1_quota_and_period(tmp_path):
    root, proc = v1_tree(tmp_path, {"/": (-1, 100000), "/libpod_parent/libpod-abc": (50000, 100000)},
                         own="/libpod_parent/libpod-abc")
    quota = read_cpu_quota(root, proc, affinity=2)
    assert quota.quota_cpus == 0.5 and "v1" in quota.source


def test_v1_no_limit(tmp_path):
    root, proc = v1_tree(tmp_path, {"/": (-1, 100000)}, mount="cpu")
    quota = read_cpu_quota(root, proc, affinity=3)
    assert quota.quota_cpus is None and quota.cpus == 3.0 and quota.source == "cgroup v1: no limit"


def test_v1_inside_a_container_reads_the_mount_when_the_host_path_is_absent(tmp_path):
    # A container's own group is mounted as the root while /proc/self/cgroup names the host's path.
    root, proc = v1_tree(tmp_path, {"/": (25000, 100000)}, own="/libpod_parent/libpod-0123")
    assert read_cpu_quota(root, proc, affinity=32).quota_cpus == 0.25


def test_a_quota_above_the_affinity_counts_the_affinity(tmp_path):
    root, proc = v2_tree(tmp_path, {"/": "400000 100000\n"})
    assert read_cpu_quota(root, proc, affinity=2).cpus == 2.0


def test_no_cgroup_and_an_unreadable_one(tmp_path):
    assert read_cpu_quota(tmp_path / "none", tmp_path / "no-proc", affinity=4) == CpuQuota(None, 4, "no cpu cgroup")
    root, proc = v2_tree(tmp_path, {"/": "garbage\n"})
    quota = read_cpu_quota(root, proc, affinity=4)
    assert quota.quota_cpus is None and quota.source == "unreadable" and quota.cpus == 4.0


@pytest.mark.parametrize(("cpus", "threads"), [(0.1, 1), (0.5, 1), (0.999, 1), (1.0, 1), (1.5, 1), (2.0, 2), (2.5, 2), (16.0, 16)])
def test_threads_are_the_whole_cpus_at_least_one(cpus, threads):
    assert threads_for(cpus) == threads


def test_inference_threads_zero_follows_the_quota_never_the_host_cores(monkeypatch):
    monkeypatch.setattr(cpu_quota, "cpu_quota", lambda: CpuQuota(0.1, 64, "test"))
    assert inference_threads(0) == 1
    assert inference_threads(3) == 3  # an operator's figure stands
    monkeypatch.setattr(cpu_quota, "cpu_quota", lambda: CpuQuota(None, 4, "test"))
    assert inference_threads(0) == 4


def test_describe_reports_the_quota_and_the_threads():
    assert CpuQuota(0.5, 8, "cgroup v2 x").describe() == {"quota_cpus": 0.5, "affinity_cpus": 8,
                                                           "source": "cgroup v2 x", "cpus": 0.5}


def test_thread_pools_are_set_not_defaulted(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "32")
    for name in cpu_quota.THREAD_POOL_VARIABLES:
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
    limit_thread_pools(1)
    assert all(os.environ[name] == "1" for name in cpu_quota.THREAD_POOL_VARIABLES)
