"""Stage G/H: coefficient windows -> keypoints -> frames, in batches, source-only work done once.

    windows = CoefficientWindows(coeffs, source, full=..., still=..., expression_scale=...)
    renderer = Renderer(generator, mapping)           # generator: plain or FastGenerator
    canonical = canonical_keypoints(kp_detector, source_image)      # then the detector can go
    renderer.prepare(canonical, source_image, windows.source())      # once per job
    for start in range(0, T, batch): frames = renderer.render(windows.batch(start, batch))

Frames are rendered in order in batches of consecutive frames. The reference reshapes the
padded sequence to (batch, L) and renders column by column; every frame is independent, so
the pixels are the same and only the grouping differs, which lets each batch go straight to
the encoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.pipelines.animation.networks.keypoints import transform_keypoints
from backend.pipelines.animation.networks.mapping import WINDOW_FRAMES

HALF_WINDOW = WINDOW_FRAMES // 2


class CoefficientWindows:
    """The MappingNet inputs: 27-frame windows (edge-replicated) of the driving coefficients."""

    def __init__(self, coeffs: np.ndarray, source: np.ndarray, *, full: bool, still: bool,
                 expression_scale: float) -> None:
        target = np.array(coeffs[:, :70], dtype=np.float32)
        target[:, :64] *= expression_scale
        width = 73 if full else 70
        self.source_coeffs = np.asarray(source[:width], dtype=np.float32)
        if full:
            target = np.concatenate([target, np.repeat(self.source_coeffs[None, 70:73], len(target), 0)], axis=1)
        if still:
            target[:, 64:] = self.source_coeffs[64:]
        self.target = target
        self.frames = len(target)

    def source(self) -> np.ndarray:
        """(1, C, 27): the source coefficients repeated."""
        return np.repeat(self.source_coeffs[None, :, None], WINDOW_FRAMES, axis=2)

    def batch(self, start: int, count: int) -> np.ndarray:
        """(n, C, 27) for frames start .. start+count-1 (clipped to the sequence)."""
        frames = np.arange(start, min(start + count, self.frames))
        index = np.clip(frames[:, None] + np.arange(-HALF_WINDOW, HALF_WINDOW + 1)[None, :], 0, self.frames - 1)
        return np.ascontiguousarray(self.target[index].transpose(0, 2, 1))


@dataclass
class SourceState:
    feature_3d: torch.Tensor  # (1, 32, 16, S/4, S/4): the generator's source encoding
    kp_source: torch.Tensor  # (1, 15, 3)
    kp_canonical: torch.Tensor  # (1, 15, 3)


def canonical_keypoints(kp_detector: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """(1, 15, 3) float32 canonical keypoints of the source image (1, 3, S, S) in [0, 1]."""
    with torch.inference_mode():
        return kp_detector(image.to(next(kp_detector.parameters()).dtype)).float()


class Renderer:
    """MappingNet + keypoint transformation + generator, with the source computed once."""

    def __init__(self, generator: torch.nn.Module, mapping: torch.nn.Module, dtype: torch.dtype = torch.float32) -> None:
        self.generator = generator
        self.mapping = mapping
        self.dtype = dtype
        self.state: SourceState | None = None

    def prepare(self, canonical: torch.Tensor, image: torch.Tensor, source_window: np.ndarray) -> SourceState:
        """image (1, 3, S, S) in [0, 1]; keeps the source encoding and source keypoints."""
        with torch.inference_mode():
            image = image.to(self.dtype)
            motion = self.mapping(torch.from_numpy(source_window).to(self.dtype))
            kp_source = transform_keypoints(canonical, motion)
            feature_3d = self.generator.encode_source(image)
        self.state = SourceState(feature_3d=feature_3d, kp_source=kp_source, kp_canonical=canonical)
        return self.state

    def driving_keypoints(self, windows: np.ndarray) -> torch.Tensor:
        assert self.state is not None, "prepare() first"
        motion = self.mapping(torch.from_numpy(windows).to(self.dtype))
        return transform_keypoints(self.state.kp_canonical.expand(len(windows), -1, -1), motion)

    def render(self, windows: np.ndarray) -> torch.Tensor:
        """(n, C, 27) windows -> (n, 3, S, S) float32 frames in [0, 1]."""
        assert self.state is not None, "prepare() first"
        n = len(windows)
        with torch.inference_mode():
            kp_driving = self.driving_keypoints(windows)
            feature = self.state.feature_3d.expand(n, *self.state.feature_3d.shape[1:])
            deformation, occlusion = self.generator.motion(feature, kp_driving, self.state.kp_source.expand(n, -1, -1))
            return self.generator.decode(feature, deformation, occlusion).float()


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(n, 3, H, W) [0, 1] -> (n, H, W, 3) uint8 (skimage img_as_ubyte: rint(x * 255))."""
    return torch.round(frames.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
