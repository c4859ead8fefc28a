"""make_session applies the configured memory options; exported folders are found or refused clearly."""
from __future__ import annotations

import json

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from backend.errors import ModelUnavailable  # noqa: E402
from backend.pipelines.onnx_session import exported_model_or_unavailable, make_session, set_malloc_mmap_threshold  # noqa: E402


@pytest.fixture
def tiny_model(tmp_path):
    """y = x @ W, W a 4x3 initializer."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), name="W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("arena,pattern,threads", [(False, False, 1), (True, True, 2)])
def test_session_options_follow_settings(tiny_model, make_settings, arena, pattern, threads) -> None:
    session = make_session(tiny_model, make_settings(onnx_cpu_arena=arena, onnx_mem_pattern=pattern,
                                                     inference_threads=threads))
    options = session.get_session_options()
    assert (options.enable_cpu_mem_arena, options.enable_mem_pattern, options.intra_op_num_threads) == (arena, pattern, threads)
    assert options.inter_op_num_threads == 1
    x = np.ones((2, 4), dtype=np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x @ np.arange(12, dtype=np.float32).reshape(4, 3))


def test_malloc_threshold_is_set_only_when_asked() -> None:
    assert set_malloc_mmap_threshold(0) is False
    assert set_malloc_mmap_threshold(1024) is True
    assert set_malloc_mmap_threshold(1024) is True  # idempotent


def test_exported_folder_found_or_refused(tmp_path, make_settings) -> None:
    settings = make_settings(onnx_dir=tmp_path)
    with pytest.raises(ModelUnavailable, match="fetch_models.py --models language"):
        exported_model_or_unavailable(settings, "whisper", "language")
    (tmp_path / "whisper").mkdir()
    (tmp_path / "whisper" / "model.onnx").write_bytes(b"x")
    (tmp_path / "whisper" / "meta.json").write_text(json.dumps({"languages": ["en"]}))
    path, meta = exported_model_or_unavailable(settings, "whisper", "language")
    assert path == tmp_path / "whisper" / "model.onnx" and meta == {"languages": ["en"]}
