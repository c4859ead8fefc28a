"""The recycle decision, called directly: a snapshot in, a verdict out; no Flask, no threads."""
from __future__ import annotations

from dataclasses import replace

from backend.registry.recycle import Recycle, RecycleSnapshot, decide_recycle, recycle_helps

NOW = 1_000_000.0
# 300 MB counted as used, 150 of it this worker's retained memory: a fresh worker has 250 free for the 200 it needs
HELPS = RecycleSnapshot(can_recycle=True, now=NOW, requested_at=None, ttl_s=300, others_loaded=(), others_in_use=(),
                        used_mb=300, retained_mb=150, need_fresh_mb=200, limit_mb=400)


def test_a_replacement_helps_only_when_a_fresh_worker_would_fit_the_model():
    assert recycle_helps(used_mb=300, retained_mb=150, need_fresh_mb=200, limit_mb=400)
    # other workers hold the memory: a fresh one would be refused too
    assert not recycle_helps(used_mb=300, retained_mb=20, need_fresh_mb=200, limit_mb=400)
    # nothing retained: replacing the worker changes nothing
    assert not recycle_helps(used_mb=100, retained_mb=0, need_fresh_mb=500, limit_mb=400)


def test_asks_when_nothing_else_is_held_and_a_fresh_worker_would_fit():
    assert decide_recycle(HELPS) is Recycle.ASK
    assert decide_recycle(replace(HELPS, need_fresh_mb=250)) is Recycle.ASK  # 300 - 150 + 250: exactly at the line


def test_no_replacement_when_a_fresh_worker_would_be_refused_too():
    assert decide_recycle(replace(HELPS, need_fresh_mb=250.001)) is Recycle.NO
    assert decide_recycle(replace(HELPS, retained_mb=0)) is Recycle.NO


def test_no_replacement_outside_a_gunicorn_worker():
    assert decide_recycle(replace(HELPS, can_recycle=False)) is Recycle.NO
    assert decide_recycle(replace(HELPS, can_recycle=False, requested_at=NOW - 1)) is Recycle.NO


def test_no_replacement_while_another_model_is_loaded_loading_or_in_use():
    assert decide_recycle(replace(HELPS, others_loaded=("pin",))) is Recycle.NO
    assert decide_recycle(replace(HELPS, others_in_use=("language",))) is Recycle.NO


def test_asked_once_per_ttl_then_again():
    asked = replace(HELPS, requested_at=NOW - 299)
    assert decide_recycle(asked) is Recycle.ASKED
    # already asked: said so even when the rest would now answer no (the replacement is on its way)
    assert decide_recycle(replace(asked, others_loaded=("pin",), retained_mb=0)) is Recycle.ASKED
    assert decide_recycle(replace(HELPS, requested_at=NOW - 300)) is Recycle.ASK  # the window has passed


def test_with_no_ttl_a_worker_asks_once_for_good():
    for ttl_s in (0, -1):
        assert decide_recycle(replace(HELPS, ttl_s=ttl_s, requested_at=NOW - 10**9)) is Recycle.ASKED
        assert decide_recycle(replace(HELPS, ttl_s=ttl_s)) is Recycle.ASK
