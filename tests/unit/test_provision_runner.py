"""Background provisioning (backend/provision/runner.py): the lock, progress, the memory verdict, and a model
that becomes servable while the server runs, without a restart."""
from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backend.catalog import pipeline_class
from backend.provision import progress, runner
from config import Settings
from scripts import speech_clips
from tests.conftest import ROOT

WAIT_S = 120


def fake_step(tmp_path: Path, gate: Path, fail: bool = False):
    """A provisioning command that prints a step's lines, waiting at `gate` between fetching and exporting."""
    script = (f"import pathlib, sys, time\n"
              f"print('language: fetching Whisper from somewhere', flush=True)\n"
              f"deadline = time.time() + {WAIT_S}\n"
              f"while not pathlib.Path({str(gate)!r}).exists() and time.time() < deadline: time.sleep(0.05)\n"
              f"print('language: exporting /x to ONNX (parity checked)', flush=True)\n"
              f"print('language: FAILED — converting Whisper: boom' if {fail} else 'language: fetched', flush=True)\n"
              f"sys.exit(1 if {fail} else 0)\n")
    return lambda model: [sys.executable, "-c", script]


def wait_for(predicate, what: str):
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def test_progress_is_written_stage_by_stage(make_settings, tmp_path) -> None:
    settings = make_settings(enabled_models="tts,language", state_dir=tmp_path / "state")
    gate = tmp_path / "gate"
    log = io.StringIO()
    thread = threading.Thread(target=runner.run_background,
                              kwargs={"settings": settings, "command": fake_step(tmp_path, gate),
                                      "free_mb": lambda: 1e9, "log": log})
    thread.start()
    try:
        seen = wait_for(lambda: progress.provisioning(settings, "language"), "language provisioning")
        wait_for(lambda: (progress.provisioning(settings, "language") or {}).get("stage") == "fetching", "fetching")
        assert seen["state"] == "running"
    finally:
        gate.touch()
        thread.join(WAIT_S)
    record = progress.read(settings, "language")
    assert record["state"] == "done" and record["percent"] == 100.0
    assert progress.provisioning(settings, "language") is None
    assert "provisioning language: language: exporting /x to ONNX" in log.getvalue()


def test_a_failed_step_says_its_last_line(make_settings, tmp_path) -> None:
    settings = make_settings(enabled_models="tts,language", state_dir=tmp_path / "state")
    gate = tmp_path / "gate"
    gate.touch()
    code = runner.run_background(settings, command=fake_step(tmp_path, gate, fail=True), free_mb=lambda: 1e9,
                                 log=io.StringIO())
    assert code == 1
    record = progress.last_outcome(settings, "language")
    assert record["state"] == "failed" and record["reason"] == "language: FAILED — converting Whisper: boom"


def test_a_second_runner_sees_the_lock_and_converts_nothing(make_settings, tmp_path) -> None:
    settings = make_settings(enabled_models="tts,language", state_dir=tmp_path / "state")
    calls = []
    log = io.StringIO()
    with runner.runner_lock(settings) as held:
        assert held
        code = runner.run_background(settings, command=lambda model: calls.append(model) or ["true"],
                                     free_mb=lambda: 1e9, log=log)
    assert code == 0 and calls == []
    assert "another process holds the lock" in log.getvalue()
    assert progress.read(settings, "language") is None


def test_two_runner_processes_convert_once(tmp_path) -> None:
    """Two starts at once (serve.sh twice): one takes the lock, the other exits at once."""
    from tests.conftest import ROOT as root

    env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    env.update(STATE_DIR=str(tmp_path / "state"), ONNX_DIR=str(tmp_path / "onnx"), ENABLED_MODELS="tts",
               PROVISION_MEMORY_MB="0")
    gate = tmp_path / "hold"
    script = ("import pathlib, time\nfrom config import build_settings\nfrom backend.provision.runner import runner_lock\n"
              f"with runner_lock(build_settings()) as held:\n    print(held, flush=True)\n"
              f"    while not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)\n")
    with subprocess.Popen([sys.executable, "-c", script], cwd=root, env=env, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline().strip() == "True"
            second = subprocess.run([sys.executable, "-m", "backend.provision", "background"], cwd=root, env=env,
                                    capture_output=True, text=True, timeout=WAIT_S)
            assert second.returncode == 0 and "another process holds the lock" in second.stdout
        finally:
            gate.touch()
            holder.wait(WAIT_S)


def test_too_little_memory_skips_the_conversion_with_its_reason(make_app, tmp_path) -> None:
    app = make_app(enabled_models="tts,language", memory_budget_mb=16384, state_dir=tmp_path / "state")
    settings = app.config["SETTINGS"]
    code = runner.run_background(settings, command=lambda model: pytest.fail("must not run"), free_mb=lambda: 400.0,
                                 log=io.StringIO())
    assert code == 0
    language = app.test_client().get("/ready").json["models"]["language"]
    assert language["last_provisioning"]["state"] == "skipped"
    assert "needs about 2300 MB and this box has 400 MB free" in language["last_provisioning"]["reason"]
    assert "fetch_models.py --models language" in language["last_provisioning"]["fix"]
    assert runner.memory_verdict(0, 10.0) is None and runner.memory_verdict(2300, 2300.0) is None


def test_nothing_to_do_when_every_model_is_servable(make_settings, tmp_path) -> None:
    settings = make_settings(enabled_models="tts", state_dir=tmp_path / "state")
    assert runner.wanted(settings) == []
    assert runner.run_background(settings, command=lambda model: pytest.fail("must not run"), log=io.StringIO()) == 0


@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_language_becomes_servable_without_a_restart(make_app, tmp_path, whisper_checkpoint) -> None:
    """The real command (scripts/fetch_models.py, a tiny checkpoint as WHISPER_MODEL) in its own process, beside
    an app that answered 503 for language before and 200 after, the same app object.

    The export's fp32/int8 decision clips are already cached in MODEL_DIR/speech-clips, as a second export
    finds them: spoken by espeak-ng here, in the Kokoro plan's languages and texts (Kokoro would take
    minutes to speak them, and a tiny random Whisper's decision means nothing either way)."""
    pytest.importorskip("torch")
    if not speech_clips.espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    espeak_voice = {language: voice for voice, (language, _) in speech_clips.ESPEAK_TEXTS.items()}
    speech_clips.cached_clips(tmp_path / "models" / "speech-clips" / "kokoro", speech_clips.kokoro_plan(),
                              lambda: lambda clip: speech_clips.espeak_speak(
                                  dataclasses.replace(clip, voice=espeak_voice[clip.language])))
    app = make_app(enabled_models="tts,language", memory_budget_mb=16384, onnx_dir=tmp_path / "onnx",
                   state_dir=tmp_path / "state", whisper_model=str(whisper_checkpoint))
    client = app.test_client()
    assert client.get("/ready/language").status_code == 503
    env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    env.update(ONNX_DIR=str(tmp_path / "onnx"), STATE_DIR=str(tmp_path / "state"), MODEL_DIR=str(tmp_path / "models"),
               WHISPER_MODEL=str(whisper_checkpoint), ENABLED_MODELS="tts,language", PROVISION_MEMORY_MB="0",
               HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "backend.provision", "background"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "provisioning language: language: fetched Whisper from folder" in done.stdout
    settings = app.config["SETTINGS"]
    assert pipeline_class("language", "onnx").availability(settings).servable
    assert progress.read(settings, "language")["state"] == "done"
    ready = client.get("/ready/language")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
