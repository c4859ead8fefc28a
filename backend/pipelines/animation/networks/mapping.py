"""MappingNet: a 27-frame window of 3DMM coefficients -> head-pose bins, translation, keypoint offsets."""
from __future__ import annotations

import torch
from torch import nn

NUM_BINS = 66
NUM_KP = 15
DESCRIPTOR = 1024
WINDOW_FRAMES = 27


class MappingNet(nn.Module):
    def __init__(self, coeff_nc: int, descriptor_nc: int = DESCRIPTOR, layers: int = 3, num_kp: int = NUM_KP,
                 num_bins: int = NUM_BINS) -> None:
        super().__init__()
        self.coeff_nc = coeff_nc
        self.first = nn.Sequential(nn.Conv1d(coeff_nc, descriptor_nc, kernel_size=7, padding=0, bias=True))
        self.layers = layers
        for i in range(layers):
            setattr(self, f"encoder{i}", nn.Sequential(
                nn.LeakyReLU(0.1), nn.Conv1d(descriptor_nc, descriptor_nc, kernel_size=3, padding=0, dilation=3)))
        self.pooling = nn.AdaptiveAvgPool1d(1)
        self.fc_roll = nn.Linear(descriptor_nc, num_bins)
        self.fc_pitch = nn.Linear(descriptor_nc, num_bins)
        self.fc_yaw = nn.Linear(descriptor_nc, num_bins)
        self.fc_t = nn.Linear(descriptor_nc, 3)
        self.fc_exp = nn.Linear(descriptor_nc, 3 * num_kp)

    def forward(self, coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, coeff_nc, 27) -> yaw/pitch/roll logits (B, 66), t (B, 3), exp (B, 45)."""
        out = self.first(coeffs)
        for i in range(self.layers):
            out = getattr(self, f"encoder{i}")(out) + out[:, :, 3:-3]
        out = self.pooling(out).flatten(1)
        return {"yaw": self.fc_yaw(out), "pitch": self.fc_pitch(out), "roll": self.fc_roll(out),
                "t": self.fc_t(out), "exp": self.fc_exp(out)}
