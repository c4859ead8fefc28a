"""Kokoro's ONNX graph with its token durations as a second output and a cap on them, written once next to the model.

Kokoro's duration predictor ends in Round -> Clip: the Clip's output (float32 [1, n]) is each input
token's length in decoder frames (600 samples), already divided by speed and at least 1. The
published graph does not return it. The edit is byte-level, no ONNX package: a protobuf message
may be extended by appending fields, so the GraphProto gets one more `output` (field 12: a
ValueInfoProto naming the tensor, float [1, tokens]) and its length prefix grows. ONNX Runtime
then returns the tensor it computes anyway.

The same edit lets a caller cap the durations: the Clip's output is renamed and
`durations = Min(it, frame_cap)` put right after it, where `frame_cap` is a graph input with a
default ([[NO_CAP]], an initializer: ONNX Runtime treats it as an overridable initializer). Not
fed, the audio is bit-identical to the published graph's (tests/unit/test_tts_timed_graph.py);
fed (frame_caps: the final punctuation and the end pad, TTS_TAIL_FRAMES), the decoder makes fewer
frames of the silence that joins.trim cuts off again (docs/BENCHMARKS.md, issue 23).

Why at provisioning (the first load writes `<model>.timed.v2.onnx` beside the assembled model, atomically;
later loads open it directly) and not an in-memory edit at every load: the lean worker has no `onnx`
package, and parsing the 92 MB model into protobuf objects would hold a second copy of it in a
512 MB worker while ONNX Runtime builds its session.
"""
from __future__ import annotations

import logging
import os
import struct
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

DURATIONS_NAME = "/encoder/Clip_output_0"  # the packaged Kokoro v1.0 graph's name for it
CAP_INPUT = "frame_cap"  # float [1, tokens]: each token's duration is at most this (the decoder makes fewer frames)
_UNCAPPED = "/encoder/Clip_uncapped"
TIMED_SUFFIX = ".timed.v2.onnx"  # v2: with CAP_INPUT (a v1 copy, durations only, is not reused)
NO_CAP = 1e4  # frames (250 s): CAP_INPUT's default, caps nothing
_MODEL_GRAPH, _GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 7, 1, 5, 11, 12
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
    if DURATIONS_NAME in outputs:
        return DURATIONS_NAME, True
    rounded = {out for op, _, outs in nodes if op == "Round" for out in outs}
    clipped = [outs[0] for op, ins, outs in nodes if op == "Clip" and ins and ins[0] in rounded and outs]
    if not clipped:
        return None, False
    name = DURATIONS_NAME if DURATIONS_NAME in clipped else clipped[0]
    return name, name in outputs


def _value_info(name: str, tokens: str = "tokens") -> bytes:
    """ValueInfoProto{name, type: TypeProto{tensor_type: {elem_type: FLOAT, shape: [1, tokens]}}}"""
    shape = _field(1, _varint(1 << 3 | _VARINT) + _varint(1)) + _field(1, _field(2, tokens.encode()))
    tensor_type = _varint(1 << 3 | _VARINT) + _varint(_FLOAT) + _field(2, shape)
    return _field(1, name.encode()) + _field(2, _field(1, tensor_type))


def _renamed_output(blob: bytes, old: str, new: str) -> bytes:
    """A NodeProto with its output `old` renamed `new`, every other field copied as it is."""
    import io

    stream, out, key_at = io.BytesIO(blob), bytearray(), 0
    for number, wire, start, end in _fields(stream, len(blob)):
        if number == _NODE_OUTPUT and wire == _BYTES and blob[start:end] == old.encode():
            out += _field(_NODE_OUTPUT, new.encode())
        else:
            out += blob[key_at:end]
        key_at = end
    return bytes(out)


def write_timed(source: Path, target: Path, tensor: str) -> Path:
    """Copy the model to `target` with `tensor` (the durations) capped by a new input and appended to its graph's
    outputs; atomic, streaming. The node that made `tensor` now makes _UNCAPPED, and `tensor` =
    Min(_UNCAPPED, CAP_INPUT): a cap of 1e4 everywhere leaves the audio bit-identical."""
    min_node = (_field(_NODE_INPUT, _UNCAPPED.encode()) + _field(_NODE_INPUT, CAP_INPUT.encode())
                + _field(_NODE_OUTPUT, tensor.encode()) + _field(3, b"/encoder/frame_cap_min")
                + _field(_NODE_OP_TYPE, b"Min"))
    # CAP_INPUT is an input with an initializer: fed, it caps; not fed, its default [[NO_CAP]] (broadcast) caps nothing
    default = (_varint(1 << 3 | _VARINT) + _varint(1)) * 2 + _varint(2 << 3 | _VARINT) + _varint(_FLOAT) \
        + _field(4, struct.pack("<f", NO_CAP)) + _field(8, CAP_INPUT.encode())
    extra = (_field(_GRAPH_INITIALIZER, default) + _field(_GRAPH_INPUT, _value_info(CAP_INPUT, "cap_tokens"))
             + _field(_GRAPH_OUTPUT, _value_info(tensor)))
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(source, "rb") as src, open(tmp, "wb") as sink:
            key_at, start, end = _graph_span(src)
            node_at, node_end, node = _producer(src, start, end, tensor)
            # the Min right after the node it reads: nodes stay in topological order
            node = _field(_GRAPH_NODE, _renamed_output(node, tensor, _UNCAPPED)) + _field(_GRAPH_NODE, min_node)
            src.seek(0)
            _copy(src, sink, key_at)
            size = end - start - (node_end - node_at) + len(node) + len(extra)
            sink.write(_varint(_MODEL_GRAPH << 3 | _BYTES) + _varint(size))
            src.seek(start)
            _copy(src, sink, node_at - start)
            sink.write(node)
            src.seek(node_end)
            _copy(src, sink, end - node_end)
            sink.write(extra)
            src.seek(end)
            _copy(src, sink, None)
        tmp.replace(target)  # a concurrent worker sees either nothing or the whole file
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _producer(stream: BinaryIO, start: int, end: int, tensor: str) -> tuple[int, int, bytes]:
    """(where the graph's node field making `tensor` starts, where it ends, the NodeProto's bytes)."""
    stream.seek(start)
    key_at = start
    for number, wire, a, b in _fields(stream, end):
        if number == _GRAPH_NODE and wire == _BYTES:
            here = stream.tell()
            stream.seek(a)
            blob = stream.read(b - a)
            stream.seek(here)
            if tensor in _strings(blob, _NODE_OUTPUT):
                return key_at, b, blob
        key_at = b
    raise ValueError(f"no node makes {tensor}")


def _copy(src: BinaryIO, sink: BinaryIO, count: int | None) -> None:
    left = count
    while left is None or left > 0:
        chunk = src.read(_COPY_CHUNK_BYTES if left is None else min(left, _COPY_CHUNK_BYTES))
        if not chunk:
            return
        sink.write(chunk)
        if left is not None:
            left -= len(chunk)


def frame_caps(token_ids: Sequence[int], sounded: Container[int], after_frames: float) -> np.ndarray:
    """CAP_INPUT for one piece (its two pad tokens included): the tokens after its last sounded one (final
    punctuation, the end pad) at most `after_frames` frames each, the rest uncapped; 0 caps nothing.

    Kokoro gives the final punctuation 7-11 frames (0.2-0.3 s) of silence that joins.trim cuts off again."""
    import numpy as np

    caps = np.full((1, len(token_ids) + 2), NO_CAP, dtype=np.float32)
    last = next((i for i in range(len(token_ids) - 1, -1, -1) if token_ids[i] in sounded), None)
    if after_frames > 0 and last is not None:
        caps[0, last + 2:] = after_frames  # +1 for the leading pad, +1: after it
    return caps


def timed_model(model: Path, cache_dir: Path) -> tuple[Path, str | None]:
    """(the model to load, the name of its durations output or None): the timed copy beside the model (an image
    provisions it there, with its saved optimised graph) or in cache_dir, written on first use; the model
    itself when it returns durations already, has no duration predictor we know, or no copy can be written."""
    tensor, present = duration_output(model)
    if tensor is None or present:
        return model, tensor
    name = f"{model.stem}{TIMED_SUFFIX}"
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
