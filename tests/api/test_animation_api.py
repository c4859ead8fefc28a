"""POST /api/animate and /api/jobs/<id> over HTTP, with the job function injected (no rendering).

The request checks are the real ones (image header, audio decoding, options, checkpoint files,
the budget); the job runs in a real child process with `tests.job_functions`. Bad input leaves
no job folder and no record behind.
"""
from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from backend.jobs import get_jobs
from scripts.checkpoints.sadtalker import speech_like

WAIT_S = 120


def wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speech_like(seconds), 16_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's header; no real pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.fixture
def animation_app(make_app: Any, sadtalker_checkpoints: Path, face_model_dir: Path, tmp_path: Path):
    def make(function: str = "tests.job_functions:scripted", **overrides: Any):
        settings = {"sadtalker_checkpoint_dir": sadtalker_checkpoints, "face_model_dir": face_model_dir,
                    "jobs_dir": tmp_path / "jobs", "memory_budget_mb": 64_000, **overrides}
        app = make_app(**settings)
        get_jobs(app).function = function
        return app
    return make


def post(client, *, image: bytes | None, audio: bytes | None = None, **fields: Any):
    from werkzeug.datastructures import FileStorage, MultiDict
    from werkzeug.test import encode_multipart

    data: MultiDict = MultiDict({key: str(value) for key, value in fields.items()})
    if image is not None:
        data.add("image", FileStorage(io.BytesIO(image), "portrait.png"))
    if audio is not None:
        data.add("audio", FileStorage(io.BytesIO(audio), "speech.wav"))
    # encoded here, in memory: the test client would spool a large body to a file it never closes
    boundary, body = encode_multipart(data)
    return client.post("/api/animate", data=body, content_type=f"multipart/form-data; boundary={boundary}")


def wait_state(client, job_id: str, *states: str) -> dict[str, Any]:
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        body = client.get(f"/api/jobs/{job_id}").get_json()
        if body["state"] in states:
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {states}")


def job_files(tmp_path: Path) -> list[str]:
    folder = tmp_path / "jobs"
    return sorted(p.name for p in folder.iterdir() if p.name not in ("jobs.sqlite3", "jobs.sqlite3-wal",
                                                                     "jobs.sqlite3-shm")) if folder.exists() else []


def test_animate_queues_a_job_then_progress_and_the_video(animation_app, test_images, tmp_path):
    client = animation_app().test_client()
    response = post(client, image=test_images["astronaut"], audio=wav_bytes(0.5), size=256, still="true",
                    pose_style=3, seed=7)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert set(body) == {"job_id", "state", "status_url", "result_url"} and body["state"] == "queued"
    assert response.headers["Location"] == body["status_url"] == f"/api/jobs/{body['job_id']}"
    done = wait_state(client, body["job_id"], "done", "failed")
    assert done["state"] == "done", done
    assert {"id", "state", "progress", "error", "created_at", "finished_at", "facts"} <= set(done)
    assert set(done["progress"]) == {"stage", "done", "total", "percent", "eta_s"}
    assert done["progress"]["percent"] == 100.0 and done["error"] is None
    assert done["facts"]["peak_mb"] > 0 and "seconds_per_frame" in done["facts"]
    assert done["facts"]["audio_samples"] == 8000  # decoded to 16 kHz mono
    result = client.get(body["result_url"])
    assert result.status_code == 200 and result.mimetype == "video/mp4"
    assert result.data == test_images["astronaut"] * 3
    result.close()
    record = get_jobs(client.application).get(body["job_id"])
    assert record.options == {"size": 256, "still": True, "preprocess": "crop", "pose_style": 3,
                              "expression_scale": 1.0, "seed": 7}


def test_result_before_done_is_409_cancel_stops_it_and_a_finished_job_cannot_be_cancelled(animation_app,
                                                                                        test_images, tmp_path):
    client = animation_app("tests.job_functions:gated").test_client()
    job_id = post(client, image=test_images["astronaut"], audio=wav_bytes(0.2)).get_json()["job_id"]
    early = client.get(f"/api/jobs/{job_id}/result")
    assert early.status_code == 409 and early.get_json()["error"]["code"] == "job_not_done"
    wait_state(client, job_id, "running")
    cancel = client.delete(f"/api/jobs/{job_id}")
    assert cancel.status_code == 202 and cancel.get_json()["cancel_requested"] is True
    cancelled = wait_state(client, job_id, "cancelled", "done", "failed")
    assert cancelled["state"] == "cancelled"
    again = client.delete(f"/api/jobs/{job_id}")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "job_finished"
    assert client.get(f"/api/jobs/{job_id}/result").status_code == 409
    assert job_files(tmp_path) == [job_id] and list((tmp_path / "jobs" / job_id).iterdir()) == []


def test_a_queued_job_is_cancelled_at_once(animation_app, test_images, tmp_path):
    client = animation_app("tests.job_functions:gated").test_client()
    first = post(client, image=test_images["astronaut"], audio=wav_bytes(0.2)).get_json()["job_id"]
    second = post(client, image=test_images["astronaut"], audio=wav_bytes(0.2)).get_json()["job_id"]
    wait_state(client, first, "running")
    cancel = client.delete(f"/api/jobs/{second}")
    assert cancel.status_code == 200 and cancel.get_json()["state"] == "cancelled"
    client.delete(f"/api/jobs/{first}")
    (tmp_path / "jobs" / "gate").touch()
    wait_state(client, first, "cancelled", "done")


def test_unknown_jobs_are_404(animation_app):
    client = animation_app().test_client()
    for method, path in (("get", "/api/jobs/nope"), ("get", "/api/jobs/nope/result"), ("delete", "/api/jobs/nope")):
        response = getattr(client, method)(path)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("case", ["no image", "not an image", "gif", "bomb", "both", "neither", "not audio",
                                  "audio too long", "text too long", "size", "pose_style", "unknown field"])
def test_bad_input_is_a_json_error_and_leaves_nothing(animation_app, test_images, tmp_path, case):
    from PIL import Image

    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    portrait, speech = test_images["astronaut"], wav_bytes(0.2)
    requests = {
        "no image": (400, "invalid_image", dict(image=None, audio=speech)),
        "not an image": (400, "invalid_image", dict(image=b"hello, not a picture", audio=speech)),
        "gif": (400, "invalid_image", dict(image=gif.getvalue(), audio=speech)),
        "bomb": (413, "payload_too_large", dict(image=png_claiming(50_000, 50_000), audio=speech)),
        "both": (400, "bad_request", dict(image=portrait, audio=speech, text="hello")),
        "neither": (400, "bad_request", dict(image=portrait)),
        "not audio": (400, "invalid_audio", dict(image=portrait, audio=b"RIFF....WAVEjunk")),
        "audio too long": (413, "payload_too_large", dict(image=portrait, audio=wav_bytes(2.5))),
        "text too long": (413, "payload_too_large", dict(image=portrait, text="hello there " * 20)),
        "size": (400, "invalid_request", dict(image=portrait, audio=speech, size=300)),
        "pose_style": (400, "invalid_request", dict(image=portrait, audio=speech, pose_style=46)),
        "unknown field": (400, "invalid_request", dict(image=portrait, audio=speech, colour="blue")),
    }
    status, code, fields = requests[case]
    client = animation_app(max_animation_seconds=2).test_client()
    response = post(client, **fields)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert job_files(tmp_path) == []  # nothing queued, nothing half-written
    assert client.get("/health").status_code == 200


def test_missing_checkpoints_are_named_before_anything_is_queued(animation_app, test_images, tmp_path):
    client = animation_app(sadtalker_checkpoint_dir=tmp_path / "empty").test_client()
    response = post(client, image=test_images["astronaut"], audio=wav_bytes(0.2))
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "model_unavailable"
    for name in ("SadTalker_V0.0.2_256.safetensors", "mapping_00229-model.pth.tar"):
        assert name in error["message"]
    assert job_files(tmp_path) == []


def test_a_512_mb_instance_refuses_animation_up_front(animation_app, test_images, tmp_path):
    client = animation_app(memory_budget_mb=512).test_client()
    response = post(client, image=test_images["astronaut"], audio=wav_bytes(0.2))
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "memory_budget_exceeded"
    assert error["needed_mb"] >= 1100 and error["budget_mb"] == 512
    assert "scripts/worker.sh" in error["fix"] and "JOBS_BACKEND=rq" in error["fix"]
    assert job_files(tmp_path) == []


def test_text_is_spoken_by_the_tts_pipeline_first(animation_app, test_images, kokoro_checkpoint, tmp_path):
    app = animation_app(backend="torch", kokoro_model_dir=kokoro_checkpoint)
    client = app.test_client()
    response = post(client, image=test_images["astronaut"], text="Hello there.", voice="af_heart")
    assert response.status_code == 202, response.get_json()
    done = wait_state(client, response.get_json()["job_id"], "done", "failed")
    assert done["state"] == "done" and done["facts"]["audio_samples"] > 0
    assert np.isfinite(done["facts"]["audio_samples"])
