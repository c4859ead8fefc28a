"""PoseVAE (Audio2Pose): audio embedding + source pose + style -> 32-frame head-motion chunks.

Only `audio_encoder` and `netG.decoder` run at inference. The CVAE encoder (`netG.encoder`) and
the pose discriminator (`netD_motion`) are declared with their layers only so the official
checkpoint loads strictly (5.3 M of 11.3 M elements); they have no forward.
"""
from __future__ import annotations

import torch
from torch import nn

from backend.pipelines.animation.networks.audio_encoder import wav2lip_audio_encoder

SEQ_LEN = 32
LATENT = 64
NUM_STYLES = 46
POSE_DIM = 6
AUDIO_EMB_OUT = 6


class ResidualConv(nn.Module):
    def __init__(self, cin: int, cout: int, stride, padding: int = 1) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 3, stride=stride, padding=padding),
            nn.BatchNorm2d(cout), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.conv_skip = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_block(x) + self.conv_skip(x)


class Upsample(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(cin, cout, kernel_size=(2, 1), stride=(2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(x)


class ResUnet(nn.Module):
    """(B, 1, 32, 6) -> (B, 1, 32, 6) in (0, 1); time is the H axis."""

    def __init__(self, filters=(32, 64, 128, 256)) -> None:
        super().__init__()
        f0, f1, f2, f3 = filters
        self.input_layer = nn.Sequential(nn.Conv2d(1, f0, 3, padding=1), nn.BatchNorm2d(f0), nn.ReLU(),
                                         nn.Conv2d(f0, f0, 3, padding=1))
        self.input_skip = nn.Sequential(nn.Conv2d(1, f0, 3, padding=1))
        self.residual_conv_1 = ResidualConv(f0, f1, (2, 1))
        self.residual_conv_2 = ResidualConv(f1, f2, (2, 1))
        self.bridge = ResidualConv(f2, f3, (2, 1))
        self.upsample_1 = Upsample(f3, f3)
        self.up_residual_conv1 = ResidualConv(f3 + f2, f2, 1)
        self.upsample_2 = Upsample(f2, f2)
        self.up_residual_conv2 = ResidualConv(f2 + f1, f1, 1)
        self.upsample_3 = Upsample(f1, f1)
        self.up_residual_conv3 = ResidualConv(f1 + f0, f0, 1)
        self.output_layer = nn.Sequential(nn.Conv2d(f0, 1, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.input_layer(x) + self.input_skip(x)
        x2 = self.residual_conv_1(x1)
        x3 = self.residual_conv_2(x2)
        x4 = self.upsample_1(self.bridge(x3))
        x6 = self.upsample_2(self.up_residual_conv1(torch.cat([x4, x3], dim=1)))
        x8 = self.upsample_3(self.up_residual_conv2(torch.cat([x6, x2], dim=1)))
        return self.output_layer(self.up_residual_conv3(torch.cat([x8, x1], dim=1)))


class PoseDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resunet = ResUnet()
        self.MLP = nn.Sequential()
        self.MLP.add_module("L0", nn.Linear(LATENT + SEQ_LEN * AUDIO_EMB_OUT + POSE_DIM, 128))
        self.MLP.add_module("A0", nn.ReLU())
        self.MLP.add_module("L1", nn.Linear(128, 192))
        self.MLP.add_module("sigmoid", nn.Sigmoid())
        self.pose_linear = nn.Linear(POSE_DIM, POSE_DIM)
        self.linear_audio = nn.Linear(512, AUDIO_EMB_OUT)
        self.classbias = nn.Parameter(torch.zeros(NUM_STYLES, LATENT))

    def forward(self, ref_pose: torch.Tensor, style: torch.Tensor, z: torch.Tensor,
                audio_emb: torch.Tensor) -> torch.Tensor:
        """ref_pose (B, 6), style (B,) long, z (B, 64), audio_emb (B, 32, 512) -> pose motion (B, 32, 6)."""
        batch = z.shape[0]
        audio = self.linear_audio(audio_emb).reshape(batch, -1)
        x = self.MLP(torch.cat([ref_pose, z + self.classbias[style], audio], dim=-1))
        pose = self.resunet(x.reshape(batch, 1, SEQ_LEN, POSE_DIM))
        return self.pose_linear(pose.squeeze(1))


class PoseEncoder(nn.Module):
    """Training-only CVAE encoder: held for strict loading, never run."""

    def __init__(self) -> None:
        super().__init__()
        self.resunet = ResUnet()
        self.MLP = nn.Sequential()
        self.MLP.add_module("L0", nn.Linear(454, 128))
        self.linear_means = nn.Linear(128, LATENT)
        self.linear_logvar = nn.Linear(128, LATENT)
        self.linear_audio = nn.Linear(512, AUDIO_EMB_OUT)
        self.classbias = nn.Parameter(torch.zeros(NUM_STYLES, LATENT))


class CVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = PoseEncoder()
        self.decoder = PoseDecoder()


class ConvNormRelu1d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, bias=False)
        self.norm = nn.BatchNorm1d(cout)


class PoseDiscriminator(nn.Module):
    """Training-only pose-sequence discriminator: held for strict loading, never run."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvNormRelu1d(POSE_DIM, 256, 4), ConvNormRelu1d(256, 512, 4),
                                 ConvNormRelu1d(512, 1024, 3), nn.Conv1d(1024, 1, 3))


class AudioEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = wav2lip_audio_encoder()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, 80, 16) -> (B, T, 512); frames are independent, so batch-major order is fine."""
        batch, frames = mels.shape[:2]
        return self.audio_encoder(mels.reshape(batch * frames, *mels.shape[2:])).reshape(batch, frames, -1)


class Audio2Pose(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = AudioEncoder()
        self.netG = CVAE()
        self.netD_motion = PoseDiscriminator()
