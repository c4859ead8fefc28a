"""backend.pipelines.tts.markup: inline pauses and pronunciation overrides, masked from normalisation."""
from __future__ import annotations

import pytest

from backend.errors import BadRequest
from backend.pipelines.tts.markup import MAX_CONTROLS, Pause, Phonemes, Text, parse, parse_phonemes


@pytest.mark.parametrize("written, seconds", [("[pause:0.5s]", 0.5), ("[pause:500ms]", 0.5), ("[ PAUSE : 2 ]", 2.0),
                                              ("[pause:.25s]", 0.25), ("[pause:0s]", 0.0)])
def test_pauses_in_seconds_or_milliseconds(written, seconds) -> None:
    assert parse(f"Hello {written} world") == [Text("Hello "), Pause(seconds), Text(" world")]


@pytest.mark.parametrize("written", ["[pause:11s]", "[pause:20000ms]"])
def test_pauses_over_the_limit_are_a_400(written) -> None:
    with pytest.raises(BadRequest, match="outside"):
        parse(f"Hello {written}")


def test_an_override_keeps_its_word_for_messages() -> None:
    assert parse("I am [Kokoro](/kˈOkəɹO/).") == [Text("I am "), Phonemes("kˈOkəɹO", shown="Kokoro"), Text(".")]


def test_normalisation_sees_the_text_around_controls_but_not_in_them() -> None:
    seen = []

    def rewrite(text: str) -> str:
        seen.append(text)
        return text.replace("Dr.", "Doctor")

    segments = parse("Dr. [Kokoro](/kˈOkəɹO/) waited [pause:1s] for Dr. Who.", rewrite)
    assert len(seen) == 1 and "Kokoro" not in seen[0] and "pause" not in seen[0]
    assert segments == [Text("Doctor "), Phonemes("kˈOkəɹO", shown="Kokoro"), Text(" waited "), Pause(1.0),
                        Text(" for Doctor Who.")]


def test_text_that_only_looks_like_a_control_is_text() -> None:
    assert parse("see [the notes](https://example.com) [pause]") == [Text("see [the notes](https://example.com) [pause]")]


def test_stray_private_use_characters_cannot_forge_a_control() -> None:
    assert parse("a\ue000b") == [Text("ab")]


def test_too_many_controls_are_a_400() -> None:
    with pytest.raises(BadRequest, match=str(MAX_CONTROLS)):
        parse("[pause:0.1s]" * (MAX_CONTROLS + 1))


def test_phoneme_input_keeps_pauses() -> None:
    assert parse_phonemes("həlˈO [pause:1s] wˈɜɹld") == [Text("həlˈO"), Pause(1.0), Text("wˈɜɹld")]
