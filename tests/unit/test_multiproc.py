"""The metrics folder: never an operator's files, a dead master's folder cleaned at the next start."""
from __future__ import annotations

import os
import subprocess
import sys

from backend.memory import multiproc
from tests.conftest import ROOT


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_stale_folders_are_ours_and_dead(tmp_path):
    for name in ("speech-api-metrics-11", "speech-api-metrics-22", "speech-api-metrics-x", "operator-data"):
        (tmp_path / name).mkdir()
    (tmp_path / "speech-api-metrics-33").write_text("a file, not our folder")
    stale = multiproc.stale_folders(tmp_path, alive=lambda pid: pid == 22)
    assert stale == [tmp_path / "speech-api-metrics-11"]


def test_prepare_keeps_the_operators_files_and_removes_a_dead_masters_folder(tmp_path):
    (tmp_path / "operator.db").write_text("keep me")
    dead = multiproc.folder_for(tmp_path, _dead_pid())
    dead.mkdir()
    (dead / "counter_1.db").write_text("stale samples")
    alive = multiproc.folder_for(tmp_path, os.getppid())  # a live process's folder stays
    alive.mkdir()
    own = multiproc.prepare(tmp_path, os.getpid())
    assert own.is_dir() and list(own.iterdir()) == []
    assert (tmp_path / "operator.db").read_text() == "keep me"
    assert not dead.exists() and alive.exists()


def test_gunicorn_check_config_leaves_an_operator_folder_as_it_was(tmp_path):
    """`gunicorn --check-config` (CI runs it) imports gunicorn_config.py: it must not empty the folder."""
    (tmp_path / "operator.db").write_text("keep me")
    dead = multiproc.folder_for(tmp_path, _dead_pid())
    dead.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", "-c", "gunicorn_config.py",
                             "backend.wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["operator.db"]  # its own folder gone, the dead one too
    assert (tmp_path / "operator.db").read_text() == "keep me"
