"""backend.pipelines.tts.timed_graph: Kokoro's token durations appended to its graph outputs, the audio unchanged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.pipelines.tts import kokoro_onnx
from backend.pipelines.tts.timed_graph import (CAP_INPUT, DURATIONS_NAME, NO_CAP, duration_output, frame_caps,
                                                    timed_model, write_timed)
from backend.pipelines.tts.words import FRAME_SAMPLES

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def tiny_duration_model(path: Path) -> Path:
    """x -> Round(x * 3 / speed) -> Clip(>= 1) -> durations; audio = Tile(durations' sum) of x's mean: a toy with
    Kokoro's ending of the duration predictor and an output that depends on it."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Mul", ["x", "three"], ["scaled"]),
        helper.make_node("Div", ["scaled", "speed"], ["per_speed"]),
        helper.make_node("Round", ["per_speed"], ["rounded"], name="/encoder/Round"),
        helper.make_node("Clip", ["rounded", "one"], [DURATIONS_NAME], name="/encoder/Clip"),
        helper.make_node("ReduceSum", [DURATIONS_NAME], ["frames"], keepdims=0),
        helper.make_node("Mul", ["frames", "x"], ["audio"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                        helper.make_tensor_value_info("speed", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 4])],
        initializer=[helper.make_tensor("three", TensorProto.FLOAT, [], [3.0]),
                     helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_the_byte_level_edit_is_a_valid_model_with_a_second_output(tmp_path) -> None:
    source = tiny_duration_model(tmp_path / "tiny.onnx")
    assert duration_output(source) == (DURATIONS_NAME, False)
    target = write_timed(source, tmp_path / "tiny.timed.onnx", DURATIONS_NAME)
    model = onnx.load(target)
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["audio", DURATIONS_NAME]
    assert duration_output(target) == (DURATIONS_NAME, True)
    feeds = {"x": np.array([[0.2, 0.9, 1.4, 2.6]], dtype=np.float32), "speed": np.array([2.0], dtype=np.float32)}
    before = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, feeds)
    audio, durations = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert np.array_equal(before[0], audio)
    assert durations.tolist() == [[1.0, 1.0, 2.0, 4.0]]  # round(3x / 2), at least 1


def test_the_durations_can_be_capped_and_are_not_when_no_cap_is_fed(tmp_path) -> None:
    source = tiny_duration_model(tmp_path / "tiny.onnx")
    session = ort.InferenceSession(str(write_timed(source, tmp_path / "tiny.timed.onnx", DURATIONS_NAME)),
                                   providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_overridable_initializers()] == [CAP_INPUT]  # optional: it has a default
    feeds = {"x": np.array([[0.2, 0.9, 1.4, 2.6]], dtype=np.float32), "speed": np.array([1.0], dtype=np.float32)}
    uncapped = session.run(None, feeds)
    assert uncapped[1].tolist() == [[1.0, 3.0, 4.0, 8.0]]
    audio, durations = session.run(None, {**feeds, CAP_INPUT: np.array([[NO_CAP, NO_CAP, 2.0, 1.0]], np.float32)})
    assert durations.tolist() == [[1.0, 3.0, 2.0, 1.0]]  # what the rest of the graph reads too:
    assert np.allclose(audio, feeds["x"] * 7)


def test_frame_caps_cap_what_follows_the_last_sounded_token() -> None:
    sounded = {5, 6}
    caps = frame_caps([5, 9, 6, 4, 3], sounded, 1)  # a, ' ', b, ',', '.' (+ the two pads)
    assert caps.shape == (1, 7) and caps.dtype == np.float32
    assert caps.tolist() == [[NO_CAP, NO_CAP, NO_CAP, NO_CAP, 1.0, 1.0, 1.0]]  # ',', '.', end pad
    assert (frame_caps([5, 9, 6, 4], sounded, 0) == NO_CAP).all()  # 0: nothing capped
    assert (frame_caps([4, 3], sounded, 2) == NO_CAP).all()  # nothing sounded: nothing to keep apart


def test_a_model_without_a_duration_predictor_is_left_alone(tmp_path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "plain.onnx")
    assert timed_model(tmp_path / "plain.onnx", tmp_path / "cache") == (tmp_path / "plain.onnx", None)
    assert not (tmp_path / "cache").exists()


TEXTS = ("The kettle is on, come and sit down.", "Numbers: one, two, three! And a question?",
         "ʃˈʊd ðə sˈʌn ʃˈaɪn, wˈiː wɪl ɡˈoʊ.")


@pytest.mark.skipif(kokoro_onnx.packaged_data() is None, reason="the packaged Kokoro ONNX is not installed")
def test_the_real_kokoro_graph_gives_durations_and_bit_identical_audio(tmp_path) -> None:
    import json

    model = kokoro_onnx.assemble_packaged_model(tmp_path / "kokoro-packaged")
    timed, name = timed_model(model, tmp_path / "kokoro-timed")
    assert name == DURATIONS_NAME and timed != model
    vocab = json.loads((kokoro_onnx.packaged_data() / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    pack = np.load(kokoro_onnx.packaged_data() / "voices_ja.npz")
    voice = pack[pack.files[0]]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    plain = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    edited = ort.InferenceSession(str(timed), options, providers=["CPUExecutionProvider"])
    from backend.pipelines.tts.g2p import Phonemizer
    from config import build_settings

    phonemize = Phonemizer(build_settings(prometheus_multiproc_dir=None))
    for text, speed in zip(TEXTS, (1.0, 1.3, 0.8), strict=True):
        phonemes = text if "ˈ" in text else phonemize(text)
        ids = [vocab[ch] for ch in phonemes if ch in vocab]
        feeds = {"tokens": np.array([[0, *ids, 0]], dtype=np.int64), "style": voice[len(ids) - 1],
                 "speed": np.array([speed], dtype=np.float32)}
        (before,) = plain.run(None, feeds)
        audio, durations = edited.run(None, feeds)
        assert np.array_equal(before, audio)  # bit-identical, not close
        assert durations.shape == (1, len(ids) + 2) and durations.min() >= 1
        assert int(durations.sum()) * FRAME_SAMPLES == audio.size  # one frame is 600 samples


@pytest.mark.skipif(kokoro_onnx.packaged_data() is None, reason="the packaged Kokoro ONNX is not installed")
def test_the_onnx_pipeline_times_words_without_changing_its_audio(make_settings) -> None:
    from dataclasses import replace

    from backend.api.schemas.tts import validate_request
    from backend.pipelines.tts.words import written_words

    settings = make_settings(inference_threads=1)
    pipe = kokoro_onnx.KokoroOnnxPipeline(settings)
    pipe.load()
    try:
        assert pipe.timed
        text = "The kettle is on, come and sit down. [pause:0.3s] We will talk about the weather, and the sea."
        request = validate_request(settings, text=text, fmt="wav", speed=1.2)
        plain = b"".join(pipe(replace(request, whole=True)).content)  # several pieces, planned as for one file
        timed = pipe(replace(request, timed=True))
        import io

        import soundfile

        audio, rate = soundfile.read(io.BytesIO(timed.content), dtype="float32")
        streamed, _ = soundfile.read(io.BytesIO(plain), dtype="float32")
        assert np.array_equal(audio, streamed)  # captions change nothing in the audio sent whole
        assert [w.word for w in timed.words] == written_words(text.replace("[pause:0.3s]", ""))
        starts = [w.start_time for w in timed.words]
        assert starts == sorted(starts) and all(w.start_time < w.end_time <= len(audio) / rate for w in timed.words)
    finally:
        pipe.close()


def test_a_copy_beside_the_model_is_used_and_a_read_only_folder_means_no_captions(tmp_path, monkeypatch) -> None:
    from backend.pipelines.tts import timed_graph

    source = tiny_duration_model(tmp_path / "tiny.onnx")
    beside = write_timed(source, tmp_path / "tiny.timed.v2.onnx", DURATIONS_NAME)  # as an image provisions it
    assert timed_model(source, tmp_path / "cache") == (beside, DURATIONS_NAME)
    beside.unlink()

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(timed_graph, "write_timed", refuse)
    assert timed_model(source, tmp_path / "cache") == (source, None)  # speech still served, captions not
