"""Animation is on where it can run: checkpoints configured here, or a jobs worker elsewhere."""
import pytest


@pytest.mark.parametrize("overrides, enabled", [
    ({}, False),  # no checkpoints, local jobs: off, so /ready is not held unready by it
    ({"sadtalker_checkpoint_dir": "/srv/sadtalker"}, True),
    ({"jobs_backend": "rq"}, True),  # the files are on the worker, not on this service
    ({"enable_animation": True}, True),
    ({"enable_animation": False, "sadtalker_checkpoint_dir": "/srv/sadtalker"}, False),
    ({"enabled_models": "tts", "sadtalker_checkpoint_dir": "/srv/sadtalker"}, False),
])
def test_animation_switch(make_settings, overrides, enabled):
    assert make_settings(**overrides).model_enabled("animation") is enabled
