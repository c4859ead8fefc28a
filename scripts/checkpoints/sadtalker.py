"""Random-weight SadTalker checkpoints with the official file names, written from the manifest.

`build_sadtalker_checkpoints(folder, sizes=(256,), mappings=("mapping_00229",), networks=None)`
writes SadTalker_V0.0.2_{size}.safetensors (every tensor of the five prefixed networks, or only
those in `networks` for a smaller real-shape subset) and mapping_*.pth.tar ({"mapping": ...,
"epoch": 0}). Shapes and dtypes come from sadtalker_manifest.json (a copy of
shared/sadtalker/manifest.json), not from our network classes, so loading these files strictly
is a real check of the classes. Values are scaled so activations stay finite: weights
N(0, 1/fan_in), BatchNorm identity statistics, spectral-norm u aligned with W v (sigma > 0),
and the KPDetector's anti-alias buffer is the real Gaussian. The 256 file is 725 MB.
`speech_like(seconds)` is the speech-shaped audio the animation tests and benchmark feed it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from backend.pipelines.animation.checkpoint_files import MAPPING_CROP, MAPPING_FULL, safetensors_name

MANIFEST_PATH = Path(__file__).with_name("sadtalker_manifest.json")
SAFETENSORS_NETWORKS = ("face_3drecon", "kp_extractor", "generator", "audio2exp", "audio2pose")
MAPPING_FILES = {"mapping_00229": MAPPING_CROP, "mapping_00109": MAPPING_FULL}


def manifest() -> dict:
    return json.loads(MANIFEST_PATH.read_text())


def manifest_shapes(network: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """key -> (shape, dtype) of one network, as the manifest lists it (no file prefix)."""
    return {entry["key"]: (tuple(entry["shape"]), entry["dtype"]) for entry in manifest()["networks"][network]["keys"]}


def random_state(network: str, seed: int = 0) -> dict:
    """A state dict with the manifest's keys, shapes and dtypes, filled with tame random values."""
    import torch

    from backend.pipelines.animation.networks.keypoints import gaussian_kernel

    generator = torch.Generator().manual_seed(seed)
    shapes = manifest_shapes(network)
    state = {}
    for key, (shape, dtype) in shapes.items():
        leaf = key.rsplit(".", 1)[-1]
        if dtype == "int64":
            state[key] = torch.zeros(shape, dtype=torch.int64)
        elif key == "down.weight":  # a fixed buffer in the real model too
            state[key] = gaussian_kernel(shape[0], 1.5, shape[-1])
        elif leaf == "running_var":
            state[key] = torch.rand(shape, generator=generator) * 0.5 + 0.75
        elif leaf == "running_mean":
            state[key] = torch.randn(shape, generator=generator) * 0.05
        elif len(shape) == 1 and (f"{key[:-len(leaf)]}running_mean" in shapes):  # BatchNorm affine
            state[key] = (1.0 if leaf == "weight" else 0.0) + torch.randn(shape, generator=generator) * 0.05
        elif leaf in ("weight_u", "weight_v"):
            continue  # set from weight_orig below
        elif len(shape) >= 2:
            fan_in = 1
            for size in shape[1:]:
                fan_in *= size
            if "ConvTranspose" in key or key.endswith("upsample.weight"):
                fan_in = shape[0] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=generator) / fan_in ** 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.02
    for key in [k for k in shapes if k.endswith(".weight_orig")]:
        stem = key[:-len("weight_orig")]
        matrix = state[key].reshape(state[key].shape[0], -1)
        v = torch.nn.functional.normalize(torch.randn(matrix.shape[1], generator=generator), dim=0)
        # a real checkpoint's u, v are the power-iteration estimates of the top singular vectors
        for _ in range(3):
            u = torch.nn.functional.normalize(matrix @ v, dim=0)
            v = torch.nn.functional.normalize(matrix.T @ u, dim=0)
        state[stem + "weight_u"], state[stem + "weight_v"] = u, v
    return {key: state[key] for key in shapes}


def build_sadtalker_checkpoints(folder: Path | str, *, sizes: Iterable[int] = (256,),
                                mappings: Iterable[str] = ("mapping_00229",),
                                networks: Iterable[str] | None = None, seed: int = 0) -> Path:
    """Write random checkpoints into folder (created); returns folder."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chosen = list(networks) if networks is not None else list(SAFETENSORS_NETWORKS)
    for size in sizes:
        tensors = {}
        for index, network in enumerate(chosen):
            for key, value in random_state(network, seed + index).items():
                tensors[f"{network}.{key}"] = value
        save_file(tensors, str(folder / safetensors_name(size)))
        del tensors
    for index, name in enumerate(mappings):
        torch.save({"mapping": random_state(name, seed + 100 + index), "epoch": 0}, folder / MAPPING_FILES[name])
    return folder


def speech_like(seconds: float, seed: int = 0):
    """16 kHz mono float32: a vowel-like harmonic tone with a syllable envelope, plus a little noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (0.2 * tone * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
