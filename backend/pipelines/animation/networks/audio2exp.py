"""ExpNet (SimpleWrapperV2): mel window + source expression + blink ratio -> absolute exp64 per frame."""
from __future__ import annotations

import torch
from torch import nn

from backend.pipelines.animation.networks.audio_encoder import wav2lip_audio_encoder

EXP_DIM = 64


class ExpNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = wav2lip_audio_encoder()
        self.mapping1 = nn.Linear(512 + EXP_DIM + 1, EXP_DIM)

    def forward(self, mels: torch.Tensor, ref_exp: torch.Tensor, blink: torch.Tensor) -> torch.Tensor:
        """mels (N, 1, 80, 16), ref_exp (N, 64), blink (N, 1) -> (N, 64); frames are independent."""
        audio = self.audio_encoder(mels).flatten(1)
        return self.mapping1(torch.cat([audio, ref_exp, blink], dim=1))
