"""Loading SadTalker's networks from the official files, strictly (file names: checkpoint_files.py).

The reference selects keys with a substring test (`'generator' in key`); we split on the exact
prefix, which gives the same keys (checked against the manifest) and cannot pick up a stranger.
Networks are built on the meta device and the file's tensors assigned to them, so loading never
holds two copies of the weights.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from backend.errors import ModelUnavailable
from backend.pipelines.animation.checkpoint_files import mapping_name, read_header, require_files, safetensors_name
from backend.pipelines.animation.networks.audio2exp import ExpNet
from backend.pipelines.animation.networks.audio2pose import Audio2Pose
from backend.pipelines.animation.networks.face_recon import ReconNet
from backend.pipelines.animation.networks.generator import OcclusionAwareSPADEGenerator
from backend.pipelines.animation.networks.keypoints import KPDetector
from backend.pipelines.animation.networks.mapping import MappingNet

logger = logging.getLogger(__name__)

# network name -> (constructor, key prefix in the safetensors file)
SAFETENSORS_NETWORKS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "face_3drecon": (ReconNet, "face_3drecon."),
    "kp_extractor": (KPDetector, "kp_extractor."),
    "generator": (OcclusionAwareSPADEGenerator, "generator."),
    "audio2exp": (ExpNet, "audio2exp."),
    "audio2pose": (Audio2Pose, "audio2pose."),
}
MAPPING_NETWORKS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "mapping_00229": (lambda: MappingNet(coeff_nc=70), mapping_name(full=False)),
    "mapping_00109": (lambda: MappingNet(coeff_nc=73), mapping_name(full=True)),
}


def build_empty(name: str) -> nn.Module:
    """The network with unallocated (meta) tensors, ready for load_state_dict(assign=True)."""
    constructor = (SAFETENSORS_NETWORKS.get(name) or MAPPING_NETWORKS[name])[0]
    with torch.device("meta"):
        return constructor()


def _assign(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelUnavailable(f"{source} does not match the SadTalker architecture: {exc}",
                               model="animation") from exc
    return module.eval().requires_grad_(False)


def _converted(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor.to(dtype) if tensor.is_floating_point() and tensor.dtype != dtype else tensor


SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
                      "F64": torch.float64, "I32": torch.int32}


def read_safetensors(path: Path, prefix: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tensors under `prefix` (prefix stripped), read with plain file reads into their final buffers.

    safetensors' own loader maps the whole file and copies out of the mapping, so while a
    network loads its bytes count twice in RSS (the touched file pages and the copy): for the
    404 MB generator that is the job's peak. Reading each tensor straight into its own memory
    costs one copy (two only for a tensor being converted to another dtype).
    """
    with open(path, "rb") as handle:
        header, base = read_header(handle)
        state = {}
        for key, info in header.items():
            if key == "__metadata__" or not key.startswith(prefix):
                continue
            stored = SAFETENSORS_DTYPES[info["dtype"]]
            begin, end = info["data_offsets"]
            tensor = torch.empty(info["shape"], dtype=stored)
            if end > begin:
                handle.seek(base + begin)
                handle.readinto(memoryview(tensor.view(-1).view(torch.uint8).numpy()))
            state[key[len(prefix):]] = _converted(tensor, dtype)
    return state


def load_network(folder: Path, size: int, name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    """One network from the official files, strictly; float tensors converted to dtype."""
    if name in MAPPING_NETWORKS:
        return load_mapping(folder, full=name == "mapping_00109", dtype=dtype)
    path = Path(folder) / safetensors_name(size)
    require_files(Path(folder), [path.name])
    prefix = SAFETENSORS_NETWORKS[name][1]
    try:
        state = read_safetensors(path, prefix, dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelUnavailable(f"{path.name} is not a readable safetensors file: {exc}", model="animation") from exc
    if not state:
        raise ModelUnavailable(f"{path.name} holds no '{prefix}' tensors: not a SadTalker checkpoint",
                               model="animation")
    return _assign(build_empty(name), state, path.name)


def load_mapping(folder: Path, full: bool, dtype: torch.dtype = torch.float32) -> nn.Module:
    """MappingNet from mapping_*.pth.tar['mapping'] (the file's other entries are training state)."""
    path = Path(folder) / mapping_name(full)
    require_files(Path(folder), [path.name])
    try:
        # mmap: only the mapping tensors' pages are read, not the optimiser state beside them
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelUnavailable(f"{path.name} could not be read as a torch checkpoint: {exc}",
                               model="animation") from exc
    if not isinstance(checkpoint, dict) or "mapping" not in checkpoint:
        raise ModelUnavailable(f"{path.name} has no 'mapping' entry: not a SadTalker mapping checkpoint",
                               model="animation")
    state = {key: _converted(value, dtype).clone() for key, value in checkpoint["mapping"].items()}
    del checkpoint
    return _assign(build_empty("mapping_00109" if full else "mapping_00229"), state, path.name)
