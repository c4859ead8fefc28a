"""Read a CTranslate2 `model.bin` (binary version 6) into numpy arrays, without CTranslate2.

The layout is the one `ctranslate2.specs.model_spec.ModelSpec._serialize` writes, all
little-endian:

    uint32 binary version | string spec name | uint32 spec revision | uint32 n_variables
    n_variables x (string name | uint8 rank | rank x uint32 dim | uint8 dtype id
                   | uint32 n_bytes | n_bytes of row-major data)
    uint32 n_aliases | n_aliases x (string alias | string target name)

where a string is uint16 length (including a trailing NUL), the UTF-8 bytes, then the NUL, and
the dtype ids follow CTranslate2's DataType enum (float32, int8, int16, int32, float16,
bfloat16). Arrays are read-only views into a memory map of the file: nothing is copied until a
caller converts them.
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUPPORTED_BINARY_VERSION = 6
# CTranslate2's DataType enum order (include/ctranslate2/types.h); bfloat16 is read as raw uint16.
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class Ct2FormatError(ValueError):
    """The file is not a CTranslate2 model this reader understands; the message says what differs."""


@dataclass
class Ct2Model:
    """What a model.bin holds: spec name and revision, named arrays and name aliases."""

    binary_version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following an alias (e.g. a tied output projection)."""
        return self.variables[self.aliases.get(name, name)]

    def scalar(self, name: str) -> int | float:
        return self.get(name).reshape(-1)[0].item()


class _Reader:
    def __init__(self, buffer: memoryview, path: Path) -> None:
        self.buffer, self.path, self.offset = buffer, path, 0

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.buffer):
            raise Ct2FormatError(f"{self.path}: truncated at byte {self.offset} (expected {size} more)")
        (value,) = struct.unpack_from(fmt, self.buffer, self.offset)
        self.offset += size
        return value

    def string(self) -> str:
        length = self.unpack("<H")
        raw = bytes(self.buffer[self.offset:self.offset + length])
        if len(raw) != length:
            raise Ct2FormatError(f"{self.path}: truncated at byte {self.offset} (a string of {length} bytes)")
        if not raw.endswith(b"\0"):
            raise Ct2FormatError(f"{self.path}: string at byte {self.offset} is not NUL-terminated")
        self.offset += length
        return raw[:-1].decode("utf-8")

    def array(self, dtype_id: int, shape: tuple[int, ...], n_bytes: int) -> np.ndarray:
        if dtype_id >= len(DTYPES):
            raise Ct2FormatError(f"{self.path}: unknown dtype id {dtype_id} at byte {self.offset}")
        dtype = np.dtype("<u2") if DTYPES[dtype_id] == "bfloat16" else np.dtype(DTYPES[dtype_id]).newbyteorder("<")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dtype.itemsize != n_bytes or self.offset + n_bytes > len(self.buffer):
            raise Ct2FormatError(f"{self.path}: variable of shape {shape} and {DTYPES[dtype_id]} "
                                 f"declares {n_bytes} bytes at byte {self.offset}")
        array = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.offset).reshape(shape)
        self.offset += n_bytes
        return array


def read_ct2_model(path: Path | str) -> Ct2Model:
    """Parse model.bin; the arrays stay views into a read-only memory map of the file."""
    path = Path(path)
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    reader = _Reader(memoryview(mapped), path)
    version = reader.unpack("<I")
    if version != SUPPORTED_BINARY_VERSION:
        raise Ct2FormatError(f"{path}: CTranslate2 binary version {version}; this reader knows version "
                             f"{SUPPORTED_BINARY_VERSION} only")
    spec = reader.string()
    revision = reader.unpack("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("<I")):
        name = reader.string()
        shape = tuple(reader.unpack("<I") for _ in range(reader.unpack("<B")))
        dtype_id = reader.unpack("<B")
        variables[name] = reader.array(dtype_id, shape, reader.unpack("<I"))
    aliases = {}
    for _ in range(reader.unpack("<I")):
        alias = reader.string()
        aliases[alias] = reader.string()
    if reader.offset != len(mapped):
        raise Ct2FormatError(f"{path}: {len(mapped) - reader.offset} bytes left after the aliases")
    missing = sorted(target for target in aliases.values() if target not in variables)
    if missing:
        raise Ct2FormatError(f"{path}: alias target {missing[0]!r} is not a variable")
    return Ct2Model(binary_version=version, spec=spec, revision=revision, variables=variables, aliases=aliases)


def bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 stored as uint16 -> float32 (the high half of a float32)."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def as_float32(array: np.ndarray) -> np.ndarray:
    """A float variable as float32; bfloat16 arrives as uint16 from this reader."""
    return bfloat16_to_float32(array) if array.dtype == np.uint16 else array.astype(np.float32)
