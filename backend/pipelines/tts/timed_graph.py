"""Kokoro's ONNX graph with its token durations as a second output, written once next to the model.

Kokoro's duration predictor ends in Round -> Clip: the Clip's output (float32 [1, n]) is each input
token's length in decoder frames (600 samples), already divided by speed and at least 1. The
published graph does not return it. Adding a graph output is a byte-level append, no ONNX package:
a protobuf message may be extended by appending fields, so the GraphProto gets one more `output`
(field 12: a ValueInfoProto naming the tensor, float [1, tokens]) and its length prefix grows;
everything else is copied as it is. ONNX Runtime then returns the tensor it computes anyway:
the audio is bit-identical (tests/unit/test_tts_timed_graph.py).

Why at provisioning (the first load writes `<model>.timed.onnx` beside the assembled model, atomically;
later loads open it directly) and not an in-memory edit at every load: the lean worker has no `onnx`
package, and parsing the 92 MB model into protobuf objects would hold a second copy of it in a
512 MB worker while ONNX Runtime builds its session.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

DURATIONS_NAME = "/encoder/Clip_output_0"  # the packaged Kokoro v1.0 graph's name for it
_MODEL_GRAPH, _GRAPH_NODE, _GRAPH_OUTPUT = 7, 1, 12
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE = 1, 2, 4
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_FLOAT = 1  # TensorProto.FLOAT
_COPY_CHUNK_BYTES = 4 * 2**20


def _read_varint(stream: BinaryIO) -> int | None:
    value, shift = 0, 0
    while True:
        byte = stream.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _BYTES) + _varint(len(payload)) + payload


def _fields(stream: BinaryIO, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start of its value, end of its value) of a message's fields up to `end`;
    the stream is left at each value's end."""
    while stream.tell() < end:
        key = _read_varint(stream)
        if key is None:
            return
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            start = stream.tell()
            _read_varint(stream)
        elif wire == _BYTES:
            size = _read_varint(stream) or 0
            start = stream.tell()
            stream.seek(start + size)
        elif wire in (_FIXED64, _FIXED32):
            start = stream.tell()
            stream.seek(start + (8 if wire == _FIXED64 else 4))
        else:
            raise ValueError(f"not an ONNX model (protobuf wire type {wire})")
        yield number, wire, start, stream.tell()


def _strings(blob: bytes, number: int) -> list[str]:
    """A small message's string fields of one number (a NodeProto's inputs, outputs, op_type)."""
    import io

    stream = io.BytesIO(blob)
    return [blob[a:b].decode("utf-8", "replace") for n, w, a, b in _fields(stream, len(blob))
            if n == number and w == _BYTES]


def _graph_span(stream: BinaryIO) -> tuple[int, int, int]:
    """(where the graph field's key starts, where its value starts, where it ends) in a ModelProto."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    key_at = 0
    for number, wire, start, end in _fields(stream, size):
        if number == _MODEL_GRAPH and wire == _BYTES:
            return key_at, start, end
        key_at = end
    raise ValueError("not an ONNX model (no graph)")


def duration_output(path: Path) -> tuple[str | None, bool]:
    """(the tensor holding token durations, whether it is already a graph output); (None, False) if none.

    The tensor is the output of a Clip fed by a Round (the duration predictor's end)."""
    with open(path, "rb") as stream:
        _, start, end = _graph_span(stream)
        stream.seek(start)
        nodes, outputs = [], []
        for number, wire, a, b in _fields(stream, end):
            if wire != _BYTES or number not in (_GRAPH_NODE, _GRAPH_OUTPUT):
                continue
            here = stream.tell()
            stream.seek(a)
            blob = stream.read(b - a)
            stream.seek(here)
            if number == _GRAPH_NODE:
                op = _strings(blob, _NODE_OP_TYPE)
                if op and op[0] in ("Round", "Clip"):
                    nodes.append((op[0], _strings(blob, _NODE_INPUT), _strings(blob, _NODE_OUTPUT)))
            else:
                outputs += _strings(blob, 1)
    rounded = {out for op, _, outs in nodes if op == "Round" for out in outs}
    clipped = [outs[0] for op, ins, outs in nodes if op == "Clip" and ins and ins[0] in rounded and outs]
    if not clipped:
        return None, False
    name = DURATIONS_NAME if DURATIONS_NAME in clipped else clipped[0]
    return name, name in outputs


def write_timed(source: Path, target: Path, tensor: str) -> Path:
    """Copy the model to `target` with `tensor` appended to its graph's outputs; atomic, streaming."""
    # ValueInfoProto{name, type: TypeProto{tensor_type: {elem_type: FLOAT, shape: [1, "tokens"]}}}
    shape = _field(1, _varint(1 << 3 | _VARINT) + _varint(1)) + _field(1, _field(2, b"tokens"))
    tensor_type = _varint(1 << 3 | _VARINT) + _varint(_FLOAT) + _field(2, shape)
    value_info = _field(1, tensor.encode()) + _field(2, _field(1, tensor_type))
    extra = _field(_GRAPH_OUTPUT, value_info)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(source, "rb") as src, open(tmp, "wb") as sink:
            key_at, start, end = _graph_span(src)
            src.seek(0)
            _copy(src, sink, key_at)
            sink.write(_varint(_MODEL_GRAPH << 3 | _BYTES) + _varint(end - start + len(extra)))
            src.seek(start)
            _copy(src, sink, end - start)
            sink.write(extra)
            src.seek(end)
            _copy(src, sink, None)
        tmp.replace(target)  # a concurrent worker sees either nothing or the whole file
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _copy(src: BinaryIO, sink: BinaryIO, count: int | None) -> None:
    left = count
    while left is None or left > 0:
        chunk = src.read(_COPY_CHUNK_BYTES if left is None else min(left, _COPY_CHUNK_BYTES))
        if not chunk:
            return
        sink.write(chunk)
        if left is not None:
            left -= len(chunk)


def timed_model(model: Path, cache_dir: Path) -> tuple[Path, str | None]:
    """(the model to load, the name of its durations output or None): the timed copy beside the model (an image
    provisions it there, with its saved optimised graph) or in cache_dir, written on first use; the model
    itself when it returns durations already, has no duration predictor we know, or no copy can be written."""
    tensor, present = duration_output(model)
    if tensor is None or present:
        return model, tensor
    name = f"{model.stem}.timed.onnx"
    for target in (model.parent / name, cache_dir / name):
        if target.is_file() and target.stat().st_mtime >= model.stat().st_mtime:
            return target, tensor
    target = cache_dir / name
    try:
        logger.info("writing %s: %s with its token durations (%s) as a second output", target, model.name, tensor)
        write_timed(model, target, tensor)
    except OSError as exc:  # a read-only models folder: speech without captions rather than no speech
        logger.warning("cannot write %s (%s): captions are not available", target, exc)
        return model, None
    return target, tensor
