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


# --- which G2P reads a text (issue 14: Japanese text works or is refused, never spelled out) -------------------
from backend.errors import BadRequest  # noqa: E402


@pytest.fixture
def japanese_installed(monkeypatch):
    monkeypatch.setattr(g2p, "japanese_g2p_missing", lambda: None)


@pytest.fixture
def japanese_absent(monkeypatch):
    monkeypatch.setattr(g2p, "japanese_g2p_missing", lambda: "Japanese text needs the Japanese G2P (pyopenjtalk not "
                                                             "installed): " + g2p.JAPANESE_G2P_INSTALL)


@pytest.mark.parametrize("text, lang, voice, code", [
    ("今日はとても良い天気です。", None, "jf_alpha", "j"),  # a Japanese voice given Japanese text reads Japanese
    ("カタカナとひらがな", None, "af_heart", "j"),
    ("Hello there.", None, "jf_alpha", "a"),  # the Japanese voices read English text with the English G2P
    ("Hola, ¿qué tal?", None, "ef_dora", "e"),
    ("नमस्ते दुनिया, OK", None, "hf_alpha", "h"),
    ("Bonjour", "f", "jf_alpha", "f"),
    ("Tokyo 東京", "j", "jf_alpha", "j"),
])
def test_the_g2p_follows_lang_then_the_script_then_the_voice(japanese_installed, text, lang, voice, code) -> None:
    assert g2p.g2p_code(text, lang, voice) == code


@pytest.mark.parametrize("text, lang, fragment", [
    ("Привет, мир", None, "cyrillic script (e.g. 'П'), which the American English G2P cannot read"),
    ("今日は", "e", "cjk, hiragana script (e.g. '今'), which the Spanish G2P cannot read; for Japanese text"),
    ("ひらがな", "a", 'for Japanese text set "lang": "ja"'),
    ("नमस्ते", "a", "devanagari script"),
])
def test_a_script_the_g2p_cannot_read_is_a_400(japanese_installed, text, lang, fragment) -> None:
    with pytest.raises(BadRequest) as caught:
        g2p.g2p_code(text, lang, "af_heart")
    assert caught.value.status == 400 and fragment in caught.value.message


def test_japanese_text_without_the_japanese_g2p_is_a_400_naming_what_to_install(japanese_absent) -> None:
    with pytest.raises(BadRequest) as caught:
        g2p.g2p_code("今日はとても良い天気なので", None, "jf_alpha")
    assert "pip install pyopenjtalk-plus" in caught.value.message and "romaji" in caught.value.message
    with pytest.raises(BadRequest, match="pyopenjtalk-plus"):
        g2p.language_code("ja")
    assert g2p.g2p_code("Konnichiwa", None, "jf_alpha") == "a"  # Latin letters still speak


def test_japanese_g2p_reads_kanji_offline(make_settings_module) -> None:
    if g2p.japanese_g2p_missing():
        pytest.skip(g2p.japanese_g2p_missing())
    phonemes = Phonemizer(make_settings_module())("今日はとても良い天気です。", "j")
    assert "teŋkʲi" in phonemes and not any(g2p.script_of(ch) in g2p.JAPANESE_SCRIPTS for ch in phonemes)
