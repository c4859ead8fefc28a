"""The recycle decision, called directly: a snapshot in, a verdict out; no Flask, no threads."""
from __future__ import annotations

from dataclasses import replace

from backend.registry.recycle import Recycle, RecycleSnapshot, decide_recycle, fresh_used_mb, recycle_helps

NOW = 1_000_000.0
# 300 MB counted as used; a fresh worker's service held 150 at boot: 250 free for the 200 it needs
HELPS = RecycleSnapshot(can_recycle=True, now=NOW, requested_at=None, ttl_s=300, others_loaded=(), others_in_use=(),
                        used_mb=300, fresh_used_mb=150, need_fresh_mb=200, limit_mb=400)


def test_a_replacement_helps_only_when_a_fresh_worker_would_fit_the_model():
    assert recycle_helps(used_mb=300, fresh_used_mb=150, need_fresh_mb=200, limit_mb=400)
    # other workers hold the memory: a fresh one would be refused too
    assert not recycle_helps(used_mb=300, fresh_used_mb=280, need_fresh_mb=200, limit_mb=400)
    # this worker holds nothing a fresh one would not: replacing it changes nothing
    assert not recycle_helps(used_mb=100, fresh_used_mb=100, need_fresh_mb=500, limit_mb=400)


def test_asks_when_nothing_is_in_flight_and_a_fresh_worker_would_fit():
    assert decide_recycle(HELPS) is Recycle.ASK
    assert decide_recycle(replace(HELPS, need_fresh_mb=250)) is Recycle.ASK  # 150 + 250: exactly at the line


def test_no_replacement_when_a_fresh_worker_would_be_refused_too():
    assert decide_recycle(replace(HELPS, need_fresh_mb=250.001)) is Recycle.NO
    assert decide_recycle(replace(HELPS, fresh_used_mb=300)) is Recycle.NO


def test_no_replacement_outside_a_gunicorn_worker():
    assert decide_recycle(replace(HELPS, can_recycle=False)) is Recycle.NO
    assert decide_recycle(replace(HELPS, can_recycle=False, requested_at=NOW - 1)) is Recycle.NO


def test_idle_models_never_block_a_replacement_requests_in_flight_do():
    assert decide_recycle(replace(HELPS, others_loaded=("language", "ai_voice"))) is Recycle.ASK  # issue 24
    assert decide_recycle(replace(HELPS, others_in_use=("language",))) is Recycle.NO


def test_asked_once_per_ttl_then_again():
    asked = replace(HELPS, requested_at=NOW - 299)
    assert decide_recycle(asked) is Recycle.ASKED
    # already asked: said so even when the rest would now answer no (the replacement is on its way)
    assert decide_recycle(replace(asked, others_in_use=("pin",), fresh_used_mb=300)) is Recycle.ASKED
    assert decide_recycle(replace(HELPS, requested_at=NOW - 300)) is Recycle.ASK  # the window has passed


def test_with_no_ttl_a_worker_asks_once_for_good():
    for ttl_s in (0, -1):
        assert decide_recycle(replace(HELPS, ttl_s=ttl_s, requested_at=NOW - 10**9)) is Recycle.ASKED
        assert decide_recycle(replace(HELPS, ttl_s=ttl_s)) is Recycle.ASK


def test_the_fresh_worker_figure_is_the_measured_boot_one():
    # issue 24: 164 used, 71 retained: derived 93, while the service held 88 at boot (measured)
    assert fresh_used_mb(used_mb=164, own_growth_mb=71, boot_used_mb=88, workers=1) == 88
    # two workers: the other one's growth since this boot is still there in a fresh service
    assert fresh_used_mb(used_mb=300, own_growth_mb=100, boot_used_mb=150, workers=2) == 200
    assert fresh_used_mb(used_mb=200, own_growth_mb=100, boot_used_mb=150, workers=2) == 150
