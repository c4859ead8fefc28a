"""KPDetector: the source image -> 15 canonical 3D keypoints, and the keypoint transformation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_KP = 15
TEMPERATURE = 0.1
DEPTH = 16
DEG_TO_RAD = 3.14 / 180  # the reference uses 3.14, not pi; the trained model expects it


def coordinate_grid(depth: int, height: int, width: int, dtype=torch.float32) -> torch.Tensor:
    """(D, H, W, 3) grid in [-1, 1] with the endpoints on the first and last cells, ordered (x, y, z)."""
    def axis(n: int) -> torch.Tensor:
        return 2 * (torch.arange(n, dtype=dtype) / (n - 1)) - 1
    z, y, x = torch.meshgrid(axis(depth), axis(height), axis(width), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def gaussian_kernel(channels: int, sigma: float, size: int) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32)
    mean = (size - 1) / 2
    one = torch.exp(-((coords - mean) ** 2) / (2 * sigma ** 2))
    kernel = one[:, None] * one[None, :]
    kernel = kernel / kernel.sum()
    return kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1)


class AntiAliasDownsample(nn.Module):
    """Depthwise Gaussian blur (sigma 1.5, 13x13, zero pad 6) then keep every 4th pixel from 0."""

    def __init__(self, channels: int = 3, scale: float = 0.25) -> None:
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.pad = size // 2
        self.step = int(1 / scale)
        self.register_buffer("weight", gaussian_kernel(channels, sigma, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(F.pad(x, (self.pad,) * 4), self.weight, groups=x.shape[1])
        return out[:, :, ::self.step, ::self.step]


class DownBlock2d(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class UpBlock3d(nn.Module):
    """Nearest x(1, 2, 2) -> Conv3d 3x3x3 -> BatchNorm3d -> ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1, 2, 2))
        return F.relu(self.norm(self.conv(x)))


class KPHourglass(nn.Module):
    def __init__(self, block: int = 32, in_features: int = 3, max_features: int = 1024, blocks: int = 5,
                 reshape_features: int = 16384, reshape_depth: int = DEPTH) -> None:
        super().__init__()
        self.down_blocks = nn.Sequential()
        for i in range(blocks):
            cin = in_features if i == 0 else min(max_features, block * (2 ** i))
            self.down_blocks.add_module(f"down{i}", DownBlock2d(cin, min(max_features, block * (2 ** (i + 1)))))
        cin = min(max_features, block * (2 ** blocks))
        self.conv = nn.Conv2d(cin, reshape_features, 1)
        self.up_blocks = nn.Sequential()
        for i in range(blocks):
            cin = min(max_features, block * (2 ** (blocks - i)))
            cout = min(max_features, block * (2 ** (blocks - i - 1)))
            self.up_blocks.add_module(f"up{i}", UpBlock3d(cin, cout))
        self.reshape_depth = reshape_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.down_blocks(x))
        batch, channels, height, width = out.shape
        out = out.view(batch, channels // self.reshape_depth, self.reshape_depth, height, width)  # ch = c*16 + d
        return self.up_blocks(out)


class KPDetector(nn.Module):
    """(B, 3, S, S) RGB in [0, 1] -> canonical keypoints (B, 15, 3) ordered (x, y, z)."""

    def __init__(self) -> None:
        super().__init__()
        self.predictor = KPHourglass()
        self.kp = nn.Conv3d(32, NUM_KP, 3, padding=1)
        self.down = AntiAliasDownsample()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.kp(self.predictor(self.down(image)))
        batch, kps = logits.shape[:2]
        heatmap = F.softmax(logits.view(batch, kps, -1).float() / TEMPERATURE, dim=2).view(*logits.shape)
        grid = coordinate_grid(*logits.shape[2:])
        return torch.einsum("bkdhw,dhwc->bkc", heatmap, grid)


def bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """softmax over 66 bins, expectation of bin index * 3 - 99 degrees."""
    index = torch.arange(logits.shape[1], dtype=torch.float32)
    return (F.softmax(logits.float(), dim=1) * index).sum(dim=1) * 3 - 99


def rotation_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """R = Rx(pitch) Ry(yaw) Rz(roll) from degrees (converted with 3.14/180): (B, 3, 3)."""
    yaw, pitch, roll = (angle * DEG_TO_RAD for angle in (yaw, pitch, roll))
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    rx = torch.stack([one, zero, zero, zero, pitch.cos(), -pitch.sin(), zero, pitch.sin(), pitch.cos()], 1)
    ry = torch.stack([yaw.cos(), zero, yaw.sin(), zero, one, zero, -yaw.sin(), zero, yaw.cos()], 1)
    rz = torch.stack([roll.cos(), -roll.sin(), zero, roll.sin(), roll.cos(), zero, zero, zero, one], 1)
    return rx.view(-1, 3, 3) @ ry.view(-1, 3, 3) @ rz.view(-1, 3, 3)


def transform_keypoints(canonical: torch.Tensor, motion: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rotate the canonical keypoints, add the y translation only, then the expression offsets."""
    rotation = rotation_matrix(bins_to_degrees(motion["yaw"]), bins_to_degrees(motion["pitch"]),
                               bins_to_degrees(motion["roll"]))
    rotated = torch.einsum("bmp,bkp->bkm", rotation, canonical.float())
    t = motion["t"].float()
    translation = torch.stack([torch.zeros_like(t[:, 1]), t[:, 1], torch.zeros_like(t[:, 1])], dim=1)
    return rotated + translation[:, None, :] + motion["exp"].float().view(t.shape[0], -1, 3)


