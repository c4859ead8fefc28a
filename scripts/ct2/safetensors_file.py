"""Write a .safetensors file one tensor at a time (the format: 8-byte header length, JSON header, data).

safetensors' own `save_file` wants every tensor in memory at once (290 MB of float32 for
whisper-base, on top of the mapped source); this writer holds one tensor, so a conversion fits
beside a running server. Files are read back with the safetensors library itself (tests).
"""
from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

_DTYPE_NAMES = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64"}
_ALIGN = 8  # the header is padded so the data starts on an 8-byte boundary


def write_safetensors(path: Path, tensors: Mapping[str, np.ndarray], convert: Callable[[np.ndarray], np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> str:
    """Write `convert(array)` for each tensor in name order; returns the file's sha256.

    `convert` must keep the shape and return the same dtype for every call on a given input
    dtype class (e.g. float16 -> float32): sizes are planned from one converted element.
    """
    names = sorted(tensors)
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in names:
        source = tensors[name]
        dtype = convert(source.reshape(-1)[:1]).dtype
        if dtype not in _DTYPE_NAMES:
            raise ValueError(f"{name}: dtype {dtype} is not written by this module")
        size = int(np.prod(source.shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": _DTYPE_NAMES[dtype], "shape": list(source.shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % _ALIGN)
    digest = hashlib.sha256()
    with open(path, "wb") as sink:
        for block in (struct.pack("<Q", len(encoded)), encoded):
            digest.update(block)
            sink.write(block)
        for name in names:
            data = np.ascontiguousarray(convert(tensors[name]))
            data = data.astype(data.dtype.newbyteorder("<"), copy=False)  # safetensors is little-endian
            start, end = header[name]["data_offsets"]
            if data.nbytes != end - start:
                raise ValueError(f"{name}: convert gave {data.nbytes} bytes, {end - start} were planned")
            block = memoryview(data).cast("B")
            digest.update(block)
            sink.write(block)
    return digest.hexdigest()
