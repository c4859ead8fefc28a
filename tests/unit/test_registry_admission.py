"""Admission as the pure decision it is: models' figures and one memory reading in, a verdict out."""
from __future__ import annotations

from backend.registry.admission import ModelFigures, Outcome, admit

LIMIT_MB = 400.0


def model(name: str, *, loaded: bool = True, in_use: int = 0, pinned: bool = False, last_used: float | None = 1.0,
          resident_mb: float = 100.0, headroom_mb: float = 0.0) -> ModelFigures:
    return ModelFigures(name=name, loaded=loaded, in_use=in_use, pinned=pinned, last_used=last_used,
                        resident_mb=resident_mb, headroom_mb=headroom_mb)


def test_fits_when_memory_plus_need_is_under_the_limit():
    verdict = admit([model("a")], name="b", need_mb=150, used_mb=250, limit_mb=LIMIT_MB)
    assert verdict.outcome is Outcome.FITS and verdict.fits
    assert (verdict.used_mb, verdict.free_mb, verdict.victims) == (250, 150, ())


def test_other_loaded_models_keep_head_room_for_their_next_request():
    others = [model("a", headroom_mb=60), model("off", loaded=False, headroom_mb=500)]
    verdict = admit(others, name="b", need_mb=100, used_mb=250, limit_mb=LIMIT_MB)
    assert verdict.used_mb == 310  # a's 60 MB count as used; an unloaded model keeps nothing
    assert verdict.outcome is Outcome.EVICT and verdict.victims == ("a",)


def test_the_model_asked_for_keeps_no_head_room_against_itself():
    verdict = admit([model("b", headroom_mb=300)], name="b", need_mb=100, used_mb=250, limit_mb=LIMIT_MB)
    assert verdict.fits and verdict.used_mb == 250


def test_idle_models_are_named_least_recently_used_first():
    models = [model("new", last_used=30.0), model("old", last_used=10.0), model("never", last_used=None),
              model("mid", last_used=20.0)]
    verdict = admit(models, name="x", need_mb=200, used_mb=350, limit_mb=LIMIT_MB)
    assert verdict.outcome is Outcome.EVICT
    assert verdict.victims == ("never", "old", "mid", "new")


def test_models_in_use_pinned_or_not_loaded_are_never_victims():
    models = [model("busy", in_use=1), model("pin", pinned=True), model("gone", loaded=False), model("idle")]
    verdict = admit(models, name="x", need_mb=100, used_mb=390, limit_mb=LIMIT_MB)
    assert verdict.outcome is Outcome.EVICT and verdict.victims == ("idle",)


def test_refused_when_evicting_every_unpinned_model_could_not_make_room():
    models = [model("pin", in_use=1, pinned=True, resident_mb=300), model("idle", resident_mb=50, headroom_mb=20)]
    verdict = admit(models, name="x", need_mb=200, used_mb=380, limit_mb=LIMIT_MB)
    # used 380 + idle's 20 MB head-room = 400; evicting idle frees 70: 330 + 200 > 400, and pin stays
    assert verdict.outcome is Outcome.REFUSE and verdict.victims == ()
    assert (verdict.used_mb, verdict.free_mb) == (400, 0)


def test_wait_when_only_models_in_use_stand_in_the_way():
    models = [model("busy", in_use=1, resident_mb=300), model("idle", resident_mb=50, headroom_mb=20)]
    verdict = admit(models, name="x", need_mb=200, used_mb=380, limit_mb=LIMIT_MB)
    # evicting idle frees 70 (330 + 200 > 400); busy's 300 more once it is idle: 30 + 200 <= 400
    assert verdict.outcome is Outcome.WAIT and verdict.victims == ("busy",)
    assert not verdict.fits


def test_wait_names_the_fewest_models_in_use_least_recently_used_first():
    models = [model("new", in_use=1, last_used=30.0), model("old", in_use=2, last_used=10.0),
              model("mid", in_use=1, last_used=20.0)]
    # 390 used; each frees 100: two must go idle for 150 more
    verdict = admit(models, name="x", need_mb=150, used_mb=390, limit_mb=LIMIT_MB)
    assert verdict.outcome is Outcome.WAIT and verdict.victims == ("old", "mid")
    # idle models are evicted first: with one idle, one in use is enough
    verdict = admit([*models, model("idle")], name="x", need_mb=150, used_mb=490, limit_mb=LIMIT_MB)
    assert verdict.outcome is Outcome.WAIT and verdict.victims == ("old", "mid")


def test_an_idle_model_that_makes_room_is_evicted_rather_than_waiting():
    models = [model("busy", in_use=1, resident_mb=300), model("idle", resident_mb=200)]
    verdict = admit(models, name="x", need_mb=150, used_mb=390, limit_mb=LIMIT_MB)
    assert verdict.outcome is Outcome.EVICT and verdict.victims == ("idle",)


def test_exactly_at_the_limit_fits():
    assert admit([], name="x", need_mb=150, used_mb=250, limit_mb=LIMIT_MB).fits
    assert admit([], name="x", need_mb=150.001, used_mb=250, limit_mb=LIMIT_MB).outcome is Outcome.REFUSE


def test_head_room_other_workers_reserve_counts_as_used_and_cannot_be_evicted():
    verdict = admit([model("a", resident_mb=50)], name="b", need_mb=110, used_mb=200, limit_mb=LIMIT_MB,
                    reserved_mb=150)
    assert verdict.used_mb == 350 and verdict.outcome is Outcome.REFUSE  # evicting a frees 50: still over
    assert admit([], name="b", need_mb=100, used_mb=200, limit_mb=LIMIT_MB, reserved_mb=100).fits
