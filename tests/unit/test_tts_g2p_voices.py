"""Each voice's language picks its G2P (backend/pipelines/tts/g2p.py): a en-us, b en-gb, e es, f fr, h hi, i it,
j ja, p pt-br, z zh; a language whose G2P is not installed is a 400 naming the packages, never letters spelled out."""
from __future__ import annotations

import pytest

from backend.errors import BadRequest
from backend.pipelines.tts import g2p
from backend.pipelines.tts.g2p import g2p_code, language_code


@pytest.mark.parametrize(("voice", "code"), [("af_heart", "a"), ("bm_george", "b"), ("ef_dora", "e"),
                                             ("ff_siwis", "f"), ("hf_alpha", "h"), ("if_sara", "i"),
                                             ("pf_dora", "p"), ("jf_alpha", "a"), ("xx_unknown", "a")])
def test_the_voice_language_picks_the_g2p_for_latin_text(voice: str, code: str) -> None:
    assert g2p_code("Hola, buenos dias.", None, voice) == code  # Japanese voices read Latin text as English


def test_an_explicit_language_wins_over_the_voice() -> None:
    assert g2p_code("Hello.", "a", "ef_dora") == "a"
    assert g2p_code("Hello.", "a", "zf_xiaoxiao") == "a"  # a Mandarin voice reading English needs no Mandarin G2P


def test_a_mandarin_voice_without_its_g2p_is_a_400_naming_the_packages(monkeypatch) -> None:
    monkeypatch.setattr(g2p, "MANDARIN_G2P_MODULES", ("jieba", "no_such_module_xyz"))
    with pytest.raises(BadRequest) as caught:
        g2p_code("你好。", None, "zf_xiaoxiao")
    message = caught.value.message
    assert "no_such_module_xyz not installed" in message and "pip install 'misaki[zh]==0.9.4'" in message
    assert '"lang": "en-us"' in message and caught.value.details["field"] == "voice"
    with pytest.raises(BadRequest) as caught:
        language_code("zh")
    assert "no_such_module_xyz not installed" in caught.value.message


def test_a_japanese_voice_without_its_g2p_is_a_400_for_japanese_text(monkeypatch) -> None:
    monkeypatch.setattr(g2p, "JAPANESE_G2P_MODULES", ("no_such_module_xyz",))
    with pytest.raises(BadRequest) as caught:
        g2p_code("こんにちは", None, "jf_alpha")
    assert "no_such_module_xyz not installed" in caught.value.message and "romaji" in caught.value.message
    assert g2p_code("Hello.", None, "jf_alpha") == "a"


def test_mandarin_text_with_a_mandarin_voice_is_read_as_mandarin(monkeypatch) -> None:
    monkeypatch.setattr(g2p, "MANDARIN_G2P_MODULES", ())  # as if installed: the choice, not the phonemiser
    assert g2p_code("你好。", None, "zf_xiaoxiao") == "z"
    if "j" in g2p.spoken_codes():
        assert g2p_code("你好。", None, "af_heart") == "j"  # CJK with another voice: the Japanese G2P, as before
