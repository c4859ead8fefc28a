"""Workers sharing one budget: one admission at a time, and each one's reserved head-room counted by the others
(issue 11: two workers admitting together both fit, then both first requests OOM-killed them)."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

from backend.errors import BudgetExceeded
from backend.registry import ModelRegistry, ModelState
from backend.registry.peers import Peers
from tests.conftest import budget_above_now
from tests.fakes import fake_spec


def _other_worker(state, reserved: dict[str, float], pid: int | None = None) -> None:
    """What a live worker (another process: the test's parent stands in) publishes."""
    pid = pid or os.getppid()
    (state / "workers").mkdir(parents=True, exist_ok=True)
    (state / "workers" / f"{pid}.json").write_text(json.dumps({"pid": pid, "reserved_mb": reserved}))


def test_another_workers_reserved_head_room_is_counted_before_admitting(tmp_path):
    registry = ModelRegistry(budget_above_now(200), margin_mb=0, ttl_s=-1, peers=Peers(tmp_path))
    registry.register(fake_spec("tts", 120))
    _other_worker(tmp_path, {"tts": 150.0})  # its TTS keeps 150 MB free for its next synthesis
    with pytest.raises(BudgetExceeded):
        registry.load("tts")  # 120 would fit the 200 free, not with the other worker's 150 reserved
    Peers(tmp_path).forget(os.getppid())  # the master forgets a worker that exited
    registry.load("tts")
    assert registry.state("tts") is ModelState.LOADED
    registry.shutdown()


def test_a_worker_publishes_what_its_loaded_models_reserve_and_a_dead_ones_file_is_ignored(tmp_path):
    registry = ModelRegistry(budget_above_now(500), margin_mb=0, ttl_s=-1, peers=Peers(tmp_path))
    registry.register(fake_spec("a", 30, estimate_mb=100))
    registry.load("a")
    mine = json.loads((tmp_path / "workers" / f"{os.getpid()}.json").read_text())
    assert 60 <= mine["reserved_mb"]["a"] <= 75  # the estimate's 100 less the 30 it measured: its activations
    registry.unload("a")
    assert not (tmp_path / "workers" / f"{os.getpid()}.json").exists()
    _other_worker(tmp_path, {"tts": 150.0}, pid=2**22 + 12345)  # no such process
    assert Peers(tmp_path).reserved_mb() == 0.0
    registry.shutdown()


def test_admissions_are_one_at_a_time_across_workers(tmp_path):
    first, second = Peers(tmp_path), Peers(tmp_path)  # two workers' handles on the same lock file
    order: list[str] = []
    entered = threading.Event()

    def other_worker() -> None:
        entered.wait()
        with second.admission():
            order.append("second in")

    thread = threading.Thread(target=other_worker)
    thread.start()
    with first.admission():
        entered.set()
        time.sleep(0.3)  # the other worker is waiting on the lock meanwhile
        order.append("first out")
    thread.join(timeout=10)
    assert order == ["first out", "second in"]
