"""make_session applies the configured memory options; exported folders are found or refused clearly."""
from __future__ import annotations

import json

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from backend.errors import ModelUnavailable  # noqa: E402
from backend.memory.malloc import set_malloc_mmap_threshold  # noqa: E402
from backend.pipelines.onnx_session import (  # noqa: E402
    exported_model_or_unavailable,
    make_run_options,
    make_session,
)


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


@pytest.mark.parametrize("arena,pattern,fixed,threads", [(False, False, True, 1), (True, True, True, 2),
                                                        (True, True, False, 1)])
def test_session_options_follow_settings(tiny_model, make_settings, arena, pattern, fixed, threads) -> None:
    settings = make_settings(onnx_cpu_arena=arena, onnx_mem_pattern=pattern, inference_threads=threads)
    session = make_session(tiny_model, settings, fixed_shapes=fixed)
    options = session.get_session_options()
    assert (options.enable_cpu_mem_arena, options.enable_mem_pattern, options.intra_op_num_threads) == \
        (arena, pattern and fixed, threads)  # memory patterns only where shapes are fixed
    assert options.inter_op_num_threads == 1
    x = np.ones((2, 4), dtype=np.float32)
    expected = x @ np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(session.run(None, {"x": x}, make_run_options(settings))[0], expected)


@pytest.mark.parametrize("arena,shrink,expected", [(True, "request", True), (True, "run", True), (True, "off", False),
                                                   (False, "request", False)])
def test_run_options_shrink_the_arena_only_when_there_is_one(make_settings, arena, shrink, expected) -> None:
    options = make_run_options(make_settings(onnx_cpu_arena=arena, onnx_arena_shrink=shrink))
    assert (options is not None) == expected
    if options is not None:
        assert options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"


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


def test_threads_zero_follow_the_cpu_quota_not_the_host_cores(tiny_model, make_settings, monkeypatch) -> None:
    from backend import cpu_quota

    monkeypatch.setattr(cpu_quota, "cpu_quota", lambda: cpu_quota.CpuQuota(0.1, 64, "test"))
    session = make_session(tiny_model, make_settings(inference_threads=0))
    assert session.get_session_options().intra_op_num_threads == 1


def test_the_saved_optimised_graph_is_loaded_and_answers_the_same(tiny_model, make_settings, caplog) -> None:
    from backend.pipelines.onnx_session import optimized_graph_path, save_optimized_graph, saved_graph

    settings = make_settings(inference_threads=1)
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    before = make_session(tiny_model, settings).run(None, {"x": x})[0]
    assert saved_graph(tiny_model) is None
    saved = save_optimized_graph(tiny_model, settings)
    assert saved == optimized_graph_path(tiny_model) and saved.is_file()
    assert saved_graph(tiny_model) == saved
    with caplog.at_level("INFO", logger="backend.pipelines.onnx_session"):
        after = make_session(tiny_model, settings).run(None, {"x": x})[0]
    assert "loads its saved optimised graph" in caplog.text
    np.testing.assert_array_equal(after, before)


def test_a_saved_graph_of_another_model_file_is_ignored(tiny_model, make_settings) -> None:
    from onnx import numpy_helper

    from backend.pipelines.onnx_session import save_optimized_graph, saved_graph

    save_optimized_graph(tiny_model, make_settings(inference_threads=1))
    model = onnx.load(str(tiny_model))  # re-provisioned: same name, other weights
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), name="W"))
    onnx.save(model, str(tiny_model))
    assert saved_graph(tiny_model) is None
    session = make_session(tiny_model, make_settings(inference_threads=1))
    np.testing.assert_array_equal(session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})[0], [[4, 4, 4]])
