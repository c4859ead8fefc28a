"""What the image's build stages decide: partial provisioning (warn, or fail when strict) and the fix texts inside it."""
from __future__ import annotations

import pytest

from backend.pipelines import base
from scripts import image_models


def test_fix_text_in_a_checkout_names_the_fetch_command():
    assert "scripts/fetch_models.py --models tts" in base.fetch_command("tts")


def test_fix_text_inside_the_image_names_what_works_there(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "PROJECT_ROOT", tmp_path)  # the image: backend/ and configs, no scripts/, no .venv
    text = base.fetch_command("language")
    assert ".venv" not in text
    assert "rebuild the image" in text and "STRICT_MODELS=1" in text and "MODEL_DIR" in text


@pytest.fixture
def fetch(monkeypatch):
    """scripts/fetch_models.py stood in for: ai_voice cannot be had, the others are in place."""
    calls = []

    def main(argv):
        calls.append(argv[-1])
        return 1 if argv[-1] == "ai_voice" else 0

    from backend.provision import __main__ as provision_cli
    from scripts import fetch_models

    monkeypatch.setattr(fetch_models, "main", main)
    monkeypatch.setattr(provision_cli, "main", lambda argv: calls.append("voices") or 0)
    gathered = []
    monkeypatch.setattr(image_models, "gather", gathered.append)
    return calls, gathered


def test_a_missing_model_warns_and_the_build_goes_on(fetch, tmp_path, capsys):
    calls, gathered = fetch
    assert image_models.main(["--out", str(tmp_path)]) == 0
    assert calls == ["voices", "tts", "language", "ai_voice"]  # one at a time: one missing leaves the others
    assert gathered == [tmp_path]
    err = capsys.readouterr().err
    assert "WARNING: model ai_voice is not in this image" in err and "STRICT_MODELS=1" in err


def test_strict_mode_fails_on_a_missing_model(fetch, tmp_path, capsys):
    calls, gathered = fetch
    assert image_models.main(["--models", "language,ai_voice", "--strict", "1", "--out", str(tmp_path)]) == 1
    assert calls == ["language", "ai_voice"] and gathered == []
    assert "STRICT_MODELS=1: failing the build, 1 model(s) missing: ai_voice" in capsys.readouterr().err


def test_strict_mode_passes_when_every_model_is_in_place(fetch, tmp_path):
    assert image_models.main(["--models", "tts,language", "--strict", "1", "--out", str(tmp_path)]) == 0


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        image_models.main(["--models", "animation", "--out", str(tmp_path)])


def test_missing_packages_and_face_models_inside_the_image_name_the_image(tmp_path, monkeypatch, make_settings):
    from backend.pipelines.animation.pipeline import face_models_missing

    def fix_without(module: str) -> str:
        with monkeypatch.context() as absent:  # the package not installed (the lean image has no torch)
            absent.setattr(base.importlib.util, "find_spec", lambda name: None)
            return base.runtime_missing([module]).fix

    assert "setup.sh full" in fix_without("torch")  # a checkout: its installer
    monkeypatch.setattr(base, "PROJECT_ROOT", tmp_path)  # the image
    torch = fix_without("torch")
    assert "scripts/build_image.sh full" in torch and "IMAGE=full" in torch and "setup.sh" not in torch
    assert "rebuild the image" in fix_without("onnxruntime")
    face = face_models_missing(make_settings(face_model_dir=tmp_path / "no-faces")).fix
    assert ".venv" not in face and "full image" in face and "FACE_MODEL_DIR" in face


def test_the_image_holds_one_optimised_file_per_model_kokoro_timed(tmp_path, monkeypatch):
    """gather(): each model file replaced by its optimised graph (Kokoro's with its durations as an output, which
    the server then loads as it is); the audio unchanged; no second copy (saved graph, timed copy) beside it."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from tests.unit.test_tts_timed_graph import tiny_duration_model

    from backend.pipelines.tts.timed_graph import DURATIONS_NAME, duration_output, timed_model

    kokoro = tmp_path / "models" / "onnx" / "kokoro"
    kokoro.mkdir(parents=True)
    source = tiny_duration_model(kokoro / "model.int8.onnx")
    (kokoro / "config.json").write_text('{"vocab": {}}', encoding="utf-8")
    np.savez(kokoro / "voices.npz", af_alloy=np.zeros((510, 1, 256), dtype=np.float32))
    (kokoro / "model.int8.ort-0.0.opt.onnx").write_bytes(b"a leftover saved graph")
    feeds = {"x": np.array([[0.2, 0.9, 1.4, 2.6]], dtype=np.float32), "speed": np.array([2.0], dtype=np.float32)}
    before = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("ONNX_DIR", raising=False)

    out = tmp_path / "serve-models"
    image_models.gather(out)
    served = out / "onnx" / "kokoro" / "model.int8.onnx"
    assert sorted(p.name for p in served.parent.iterdir()) == ["config.json", "model.int8.onnx", "voices.npz"]
    assert duration_output(served) == (DURATIONS_NAME, True)
    assert timed_model(served, tmp_path / "unwritten") == (served, DURATIONS_NAME)  # loaded as it is, nothing written
    audio, durations = ort.InferenceSession(str(served), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert np.array_equal(before, audio) and durations.tolist() == [[1.0, 1.0, 2.0, 4.0]]
    assert '"kokoro_export": true' in (out / image_models.IMAGE_FACTS).read_text(encoding="utf-8")


def test_the_g2p_speaks_without_phonemizers_segments_backend(tmp_path):
    """The lean image leaves `segments` (and csvw, babel, rdflib) out: English still phonemises."""
    import subprocess
    import sys

    code = ("from importlib.machinery import PathFinder\n"
            "find = PathFinder.find_spec\n"
            "PathFinder.find_spec = classmethod(lambda cls, name, path=None, target=None:"
            " None if name.split('.')[0] in ('segments', 'csvw', 'babel') else find(name, path, target))\n"
            "from backend.pipelines.tts.g2p import Phonemizer\n"
            "from config import build_settings\n"
            "import sys\n"
            "print(Phonemizer(build_settings(kokoro_g2p='espeak'))('Hello.'))\n"
            "assert 'csvw' not in sys.modules and 'babel' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=base.PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "həlˈO" in result.stdout
