"""Queue bounds sized to the CPU (backend.limits.queue_timeout_for / queue_timeout_s): pure functions, no clock."""
from __future__ import annotations

import pytest

from backend.limits import MIN_QUEUE_TIMEOUT_S, TYPICAL_REQUEST_CPU_S, queue_timeout_for, queue_timeout_s
from config import build_settings


@pytest.mark.parametrize(("cpus", "expected"), [(0.1, 182), (0.5, 37), (1.0, 30), (2.0, 30), (0.0, 1820)])
def test_the_wait_is_the_requests_ahead_at_the_speed_of_the_cpu(cpus, expected) -> None:
    assert queue_timeout_for(cpus, 7) == expected  # 7 = TTS_ADMITTED 4 + MAX_QUEUE 3, 2.6 CPU-s each


def test_the_wait_grows_with_the_requests_ahead_and_never_falls_under_the_floor() -> None:
    assert queue_timeout_for(0.1, 1) == max(MIN_QUEUE_TIMEOUT_S, round(TYPICAL_REQUEST_CPU_S / 0.1))
    assert queue_timeout_for(0.1, 14) == 2 * queue_timeout_for(0.1, 7)
    assert queue_timeout_for(64.0, 1) == MIN_QUEUE_TIMEOUT_S


def test_a_queue_timeout_that_is_set_is_kept_and_0_still_refuses_at_once() -> None:
    settings = build_settings(prometheus_multiproc_dir=None, queue_timeout_s=45)
    assert queue_timeout_s(settings, cpus=0.1) == 45
    assert queue_timeout_s(settings.model_copy(update={"queue_timeout_s": 0}), cpus=0.1) == 0


def test_the_defaults_do_not_refuse_what_would_be_served_within_two_minutes_at_a_tenth_of_a_cpu() -> None:
    settings = build_settings(prometheus_multiproc_dir=None)
    ahead = max(settings.tts_admitted, settings.model_concurrency) + settings.max_queue
    assert settings.queue_timeout_s is None and queue_timeout_s(settings, cpus=0.1) == queue_timeout_for(0.1, ahead)
    assert queue_timeout_s(settings, cpus=0.1) >= 120  # Render's free plan (issue 26's goal)
    assert queue_timeout_s(settings, cpus=0.5) >= ahead * TYPICAL_REQUEST_CPU_S / 0.5
    # Gunicorn keeps a thread for /health while TTS's admitted and queued requests hold theirs.
    assert settings.threads > settings.tts_admitted + settings.max_queue
