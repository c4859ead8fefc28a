"""Image + audio -> job -> progress -> MP4 through HTTP under Gunicorn, with the real pipeline on random weights.

Locally (a job process of the web worker; the render itself is `slow`, the no-face job is not) and
through RQ (a real redis-server and a separate worker process). The audio is a few frames long: one render costs ~20 s per frame on 2 loaded
cores, and its first batch pays the kernels' setup. The MP4 is checked by decoding it: frame
count = 25 x audio seconds (+-1), an H.264 video and an AAC audio stream, the size asked for.
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import soundfile as sf

from scripts.checkpoints.sadtalker import speech_like

RENDER_WAIT_S = 900
AUDIO_S = 0.08  # 2 frames at 25 fps (the pipeline's minimum): one render batch


def wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speech_like(seconds), 16_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def animate(url: str, image: bytes, audio: bytes, **fields: Any) -> dict[str, Any]:
    response = requests.post(f"{url}/api/animate", files={"image": ("portrait.png", image, "image/png"),
                                                         "audio": ("speech.wav", audio, "audio/wav")},
                             data={key: str(value) for key, value in fields.items()}, timeout=60)
    assert response.status_code == 202, response.text
    assert response.headers["Location"].endswith(response.json()["status_url"])
    return response.json()


def follow(url: str, job: dict[str, Any], timeout_s: float = RENDER_WAIT_S) -> tuple[dict[str, Any], list[str]]:
    """Poll the job until it ends; returns the last status and every stage seen on the way."""
    stages: list[str] = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = requests.get(url + job["status_url"], timeout=30).json()
        stage = status["progress"]["stage"]
        if not stages or stages[-1] != stage:
            stages.append(stage)
        if status["state"] in ("done", "failed", "cancelled"):
            return status, stages
        time.sleep(0.5)
    raise AssertionError(f"job not finished after {timeout_s} s: {status}")


def check_video(url: str, job: dict[str, Any], tmp_path: Path, *, seconds: float, size: int) -> dict[str, Any]:
    from backend.pipelines.animation.video import probe

    response = requests.get(url + job["result_url"], timeout=60)
    assert response.status_code == 200 and response.headers["Content-Type"] == "video/mp4"
    path = tmp_path / "result.mp4"
    path.write_bytes(response.content)
    facts = probe(path)
    assert abs(facts["frames"] - round(25 * seconds)) <= 1, facts
    assert facts["video_codec"] == "h264" and facts["audio_codec"] == "aac"
    assert facts["width"] == size
    return facts


def server_env(checkpoints: Path, faces: Path, **extra: str) -> dict[str, str]:
    return {"SADTALKER_CHECKPOINT_DIR": str(checkpoints), "FACE_MODEL_DIR": str(faces),
            "ANIMATION_BATCH_SIZE": "2", "LOG_LEVEL": "INFO", "INFERENCE_THREADS": "2", **extra}


def local_server(live_server, checkpoints: Path, faces: Path, tmp_path: Path):
    return live_server(server_env(checkpoints, faces, MEMORY_BUDGET_MB="16384", JOBS_DIR=str(tmp_path / "jobs")))


def test_local_jobs_under_gunicorn_a_portrait_without_a_face(live_server, sadtalker_checkpoints, face_model_dir,
                                                             test_images, tmp_path):
    server = local_server(live_server, sadtalker_checkpoints, face_model_dir, tmp_path)
    cat = animate(server.url, test_images["chelsea"], wav_bytes(AUDIO_S))
    refused, _ = follow(server.url, cat)
    assert refused["state"] == "failed" and refused["error"]["code"] == "no_face_detected"
    assert refused["error"]["status"] == 422 and "no face" in refused["error"]["message"]
    assert requests.get(server.url + cat["result_url"], timeout=30).status_code == 409
    assert list((tmp_path / "jobs" / cat["job_id"]).iterdir()) == []  # nothing left of it


# The same render as the rq test below, through the local backend (~2 min on 2 loaded cores): the
# default suite renders once, through RQ; h16a's pipeline test renders in a spawned child too.
@pytest.mark.slow
def test_local_jobs_under_gunicorn_render(live_server, sadtalker_checkpoints, face_model_dir, test_images, tmp_path):
    server = local_server(live_server, sadtalker_checkpoints, face_model_dir, tmp_path)
    job = animate(server.url, test_images["astronaut"], wav_bytes(AUDIO_S), size=256, seed=1)
    status, stages = follow(server.url, job)
    assert status["state"] == "done", (status, server.output()[-3000:])
    assert "render" in stages or "encode" in stages
    assert status["facts"]["peak_mb"] > 300 and status["facts"]["seconds_per_frame"] > 0
    check_video(server.url, job, tmp_path, seconds=AUDIO_S, size=256)
    log = server.output()
    assert "event=job_progress" in log and "event=job_finished" in log and "peak_rss_mb=" in log
    assert sorted(p.name for p in (tmp_path / "jobs" / job["job_id"]).iterdir()) == ["result.mp4"]


def test_rq_jobs_under_gunicorn_with_a_separate_worker(live_server, rq_worker, redis_url, sadtalker_checkpoints,
                                                       face_model_dir, test_images, tmp_path):
    from redis import Redis

    Redis.from_url(redis_url).flushdb()
    env = server_env(sadtalker_checkpoints, face_model_dir, JOBS_BACKEND="rq", REDIS_URL=redis_url)
    # the web service is a 512 MB instance: with rq it only enqueues, so animation is not refused
    server = live_server({**env, "MEMORY_BUDGET_MB": "512", "SADTALKER_CHECKPOINT_DIR": str(tmp_path / "none")})
    job = animate(server.url, test_images["astronaut"], wav_bytes(AUDIO_S))
    assert requests.get(server.url + job["status_url"], timeout=30).json()["state"] == "queued"
    worker = rq_worker({**env, "STATE_DIR": str(tmp_path / "worker-state")})
    status, stages = follow(server.url, job)
    assert status["state"] == "done", (status, worker.output()[-3000:])
    assert status["facts"]["peak_mb"] > 300
    check_video(server.url, job, tmp_path, seconds=AUDIO_S, size=256)
    assert "event=job_finished" in worker.output()


@pytest.mark.slow
def test_local_job_of_two_seconds(live_server, sadtalker_checkpoints, face_model_dir, test_images, tmp_path):
    env = server_env(sadtalker_checkpoints, face_model_dir, MEMORY_BUDGET_MB="16384",
                     JOBS_DIR=str(tmp_path / "jobs"), ANIMATION_BATCH_SIZE="1")
    server = live_server(env)
    job = animate(server.url, test_images["astronaut"], wav_bytes(2.0), still="true", pose_style=45)
    status, _ = follow(server.url, job, timeout_s=4 * 3600)
    assert status["state"] == "done", status
    assert status["progress"]["eta_s"] == 0.0
    check_video(server.url, job, tmp_path, seconds=2.0, size=256)
