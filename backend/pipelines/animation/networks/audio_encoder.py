"""Wav2Lip's audio encoder (80x16 mel window -> 512), shared by ExpNet and PoseVAE (separate weights)."""
from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Conv2d -> BatchNorm2d (-> + input) -> ReLU; keys conv_block.0 / conv_block.1 as in the checkpoint."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int, residual: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return torch.relu(out)


def wav2lip_audio_encoder() -> nn.Sequential:
    """(N, 1, 80, 16) -> (N, 512, 1, 1)."""
    return nn.Sequential(
        ConvBlock(1, 32, 3, 1, 1), ConvBlock(32, 32, 3, 1, 1, True), ConvBlock(32, 32, 3, 1, 1, True),
        ConvBlock(32, 64, 3, (3, 1), 1), ConvBlock(64, 64, 3, 1, 1, True), ConvBlock(64, 64, 3, 1, 1, True),
        ConvBlock(64, 128, 3, 3, 1), ConvBlock(128, 128, 3, 1, 1, True), ConvBlock(128, 128, 3, 1, 1, True),
        ConvBlock(128, 256, 3, (3, 2), 1), ConvBlock(256, 256, 3, 1, 1, True),
        ConvBlock(256, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0))
