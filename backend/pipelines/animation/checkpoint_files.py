"""The official SadTalker checkpoint files, by name, read from disk without torch.

    SadTalker_V0.0.2_{256,512}.safetensors   flat dict; prefixes face_3drecon. kp_extractor. generator.
                                             audio2exp. audio2pose. (the 512 file: same keys, renderer
                                             trained at 512)
    mapping_00229-model.pth.tar              torch pickle, ['mapping'] = MappingNet(70)  crop / resize
    mapping_00109-model.pth.tar              torch pickle, ['mapping'] = MappingNet(73)  full

Which files a job needs, which are missing (one error naming every one and where to get it),
and what a network's tensors weigh (from the safetensors header alone): what the pipeline's
availability check and request validation need, so neither imports torch. Loading the
networks is checkpoints.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

from backend.errors import ModelUnavailable

SIZES = (256, 512)
MAPPING_CROP = "mapping_00229-model.pth.tar"  # 70 coefficients: crop and resize
MAPPING_FULL = "mapping_00109-model.pth.tar"  # 73 coefficients (+ crop params): full
WHERE_TO_GET = ("the SadTalker v0.0.2-rc release files (OpenTalker/SadTalker GitHub release v0.0.2-rc, "
                "or the Hugging Face repo vinthony/SadTalker-V002rc)")
_MB = 1024 * 1024


def safetensors_name(size: int) -> str:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size}")
    return f"SadTalker_V0.0.2_{size}.safetensors"


def mapping_name(full: bool) -> str:
    return MAPPING_FULL if full else MAPPING_CROP


def required_files(size: int, full: bool) -> list[str]:
    """The files one job needs: the renderer of its size and the mapping net of its mode."""
    return [safetensors_name(size), mapping_name(full)]


def all_files() -> list[str]:
    return [safetensors_name(size) for size in SIZES] + [MAPPING_CROP, MAPPING_FULL]


def missing_files(folder: Path | None, names: list[str]) -> list[str]:
    if folder is None:
        return list(names)
    return [name for name in names if not (Path(folder) / name).is_file()]


def missing_message(folder: Path | None, missing: list[str]) -> str:
    where = "SADTALKER_CHECKPOINT_DIR is not set" if folder is None else f"not in SADTALKER_CHECKPOINT_DIR={folder}"
    return f"SadTalker checkpoint files missing ({where}): {', '.join(missing)}"


def fetch_hint() -> str:
    return f"download {WHERE_TO_GET} into SADTALKER_CHECKPOINT_DIR"


def require_files(folder: Path | None, names: list[str]) -> None:
    """Raises ModelUnavailable naming every missing file and where to get it."""
    missing = missing_files(folder, names)
    if missing:
        raise ModelUnavailable(f"{missing_message(folder, missing)}; {fetch_hint()}", model="animation",
                               missing_files=missing)


def read_header(handle: BinaryIO) -> tuple[dict[str, Any], int]:
    """A safetensors file's JSON header and the offset its tensor bytes start at."""
    header_size = int.from_bytes(handle.read(8), "little")
    return json.loads(handle.read(header_size)), 8 + header_size


def tensors_mb(path: Path, prefix: str) -> float:
    """Bytes of the tensors stored under `prefix`, MB, from the header only."""
    with open(path, "rb") as handle:
        header, _ = read_header(handle)
    return sum(end - begin for key, info in header.items() if key != "__metadata__" and key.startswith(prefix)
               for begin, end in [info["data_offsets"]]) / _MB
