"""backend.pipelines.tts.g2p: offline phonemes without torch or spaCy, and a clear 503 for a missing spaCy model."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from backend.errors import ModelUnavailable
from backend.pipelines.tts import g2p
from backend.pipelines.tts.g2p import Phonemizer
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def make_settings_module():
    from config import build_settings
    return lambda **kw: build_settings(**{"prometheus_multiproc_dir": None, **kw})


def test_espeak_g2p_is_offline_and_light() -> None:
    """No torch, no spaCy, and no socket opened while phonemising."""
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise OSError('network disabled in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from config import build_settings\n"
        "from backend.pipelines.tts.g2p import Phonemizer\n"
        "p = Phonemizer(build_settings(prometheus_multiproc_dir=None))\n"
        "out = {'en': p('Hello world.', 'a'), 'gb': p('Tomato.', 'b'), 'es': p('Hola.', 'e')}\n"
        "out['modules'] = [m for m in ('torch', 'spacy', 'transformers', 'kokoro') if m in sys.modules]\n"
        "print(__import__('json').dumps(out))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["modules"] == []
    assert out["en"].startswith("həlˈO") and out["en"].endswith(".")
    assert "ɑː" in out["gb"] or "ɑ" in out["gb"]
    assert "ˈola" in out["es"]


def test_misaki_g2p_without_spacy_model_is_a_clear_503(make_settings_module, monkeypatch) -> None:
    monkeypatch.setattr(g2p.importlib.util, "find_spec",
                        lambda name, *a: None if name == "en_core_web_sm" else __import__("importlib").util.find_spec(name))
    phonemizer = Phonemizer(make_settings_module(kokoro_g2p="misaki"))
    with pytest.raises(ModelUnavailable) as caught:
        phonemizer.prepare("a")
    assert caught.value.status == 503
    assert "en_core_web_sm" in caught.value.message and "KOKORO_G2P=espeak" in caught.value.message
