"""OcclusionAwareSPADEGenerator (face-vid2vid + SPADE decoder): source image + keypoints -> frame.

The plain reference computation, in three parts so the source-only encoder can run once per job:
    encode_source(image)                          -> feature_3d (B, 32, 16, S/4, S/4)
    motion(feature_3d, kp_driving, kp_source)     -> deformation, occlusion map
    decode(feature_3d, deformation, occlusion)    -> prediction (B, 3, S, S) in [0, 1]
`forward` chains them, like the reference does for every frame.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.pipelines.animation.networks.keypoints import NUM_KP, UpBlock3d, coordinate_grid

KP_VARIANCE = 0.01
MASK_FLOOR = 1e-3  # softmax mask entries below this are zeroed, without renormalising (as trained)


class SameBlock2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, padding: int = 1, lrelu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=padding)
        self.norm = nn.BatchNorm2d(cout)
        self.lrelu = lrelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.conv(x))
        return F.leaky_relu(out, 0.01) if self.lrelu else F.relu(out)


class DownBlock2d(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


def avg_pool_hw(x: torch.Tensor) -> torch.Tensor:
    """AvgPool3d((1, 2, 2)) as avg_pool2d on (B, C*D, H, W): same numbers, and it has a bf16 kernel."""
    batch, channels, depth, height, width = x.shape
    return F.avg_pool2d(x.reshape(batch, channels * depth, height, width), 2).view(
        batch, channels, depth, height // 2, width // 2)


class DownBlock3d(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool_hw(F.relu(self.norm(self.conv(x))))


class ResBlock3d(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(out))) + x


class HourglassEncoder(nn.Module):
    def __init__(self, block: int, in_features: int, blocks: int, max_features: int) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock3d(in_features if i == 0 else min(max_features, block * (2 ** i)),
                        min(max_features, block * (2 ** (i + 1)))) for i in range(blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for down in self.down_blocks:
            outs.append(down(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    def __init__(self, block: int, in_features: int, blocks: int, max_features: int) -> None:
        super().__init__()
        up = []
        for i in range(blocks)[::-1]:
            cin = (1 if i == blocks - 1 else 2) * min(max_features, block * (2 ** (i + 1)))
            up.append(UpBlock3d(cin, min(max_features, block * (2 ** i))))
        self.up_blocks = nn.ModuleList(up)
        self.out_filters = block + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips.pop()
        for up in self.up_blocks:
            out = torch.cat([up(out), skips.pop()], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    def __init__(self, block: int = 32, in_features: int = (NUM_KP + 1) * 5, blocks: int = 5,
                 max_features: int = 1024) -> None:
        super().__init__()
        self.encoder = HourglassEncoder(block, in_features, blocks, max_features)
        self.decoder = HourglassDecoder(block, in_features, blocks, max_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def keypoint_gaussians(kp: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """exp(-0.5 |grid - kp|^2 / 0.01): (B, K, D, H, W)."""
    diff = grid[None, None] - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / KP_VARIANCE)


class DenseMotionNetwork(nn.Module):
    def __init__(self, feature_channels: int = 32, compress: int = 4, depth: int = 16) -> None:
        super().__init__()
        self.hourglass = Hourglass(in_features=(NUM_KP + 1) * (compress + 1))
        self.mask = nn.Conv3d(self.hourglass.decoder.out_filters, NUM_KP + 1, 7, padding=3)
        self.compress = nn.Conv3d(feature_channels, compress, 1)
        self.norm = nn.BatchNorm3d(compress)
        self.occlusion = nn.Conv2d(self.hourglass.decoder.out_filters * depth, 1, 7, padding=3)

    def sparse_motions(self, grid: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> torch.Tensor:
        """(B, 16, D, H, W, 3): the identity (background), then grid - kp_driving + kp_source per keypoint."""
        batch = kp_driving.shape[0]
        moved = grid[None, None] - kp_driving[:, :, None, None, None, :] + kp_source[:, :, None, None, None, :]
        return torch.cat([grid[None, None].expand(batch, 1, *grid.shape), moved], dim=1)

    def forward(self, feature_3d: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor):
        feature = F.relu(self.norm(self.compress(feature_3d)))
        batch, channels, depth, height, width = feature.shape
        grid = coordinate_grid(depth, height, width, dtype=feature.dtype)
        motions = self.sparse_motions(grid, kp_driving.to(feature.dtype), kp_source.to(feature.dtype))
        # one grid_sample over all 16 motion fields at once (depth axis = keypoint x depth): the
        # same samples as sampling 16 repeated copies of the feature, without the copies
        deformed = F.grid_sample(feature, motions.reshape(batch, (NUM_KP + 1) * depth, height, width, 3),
                                 align_corners=False)
        deformed = deformed.view(batch, channels, NUM_KP + 1, depth, height, width).transpose(1, 2)
        heatmap = (keypoint_gaussians(kp_driving.to(feature.dtype), grid)
                   - keypoint_gaussians(kp_source.to(feature.dtype), grid))
        heatmap = torch.cat([torch.zeros_like(heatmap[:, :1]), heatmap], dim=1).unsqueeze(2)
        inputs = torch.cat([heatmap, deformed], dim=2).view(batch, -1, depth, height, width)
        prediction = self.hourglass(inputs)
        mask = F.softmax(self.mask(prediction), dim=1)
        mask = torch.where(mask < MASK_FLOOR, torch.zeros_like(mask), mask)
        deformation = torch.einsum("bkdhw,bkdhwc->bdhwc", mask, motions)
        occlusion = torch.sigmoid(self.occlusion(prediction.reshape(batch, -1, height, width)))
        return deformation, occlusion


class SpectralNormConv2d(nn.Module):
    """Conv2d stored as spectral_norm does (weight_orig, weight_u, weight_v); eval weight = W / (u . W v)."""

    def __init__(self, cin: int, cout: int, kernel: int, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight_orig = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_uniform_(self.weight_orig, a=5 ** 0.5)
        self.register_buffer("weight_u", F.normalize(torch.randn(cout), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(cin * kernel * kernel), dim=0))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.padding = padding

    def effective_weight(self) -> torch.Tensor:
        """No power iteration: in eval mode torch's spectral_norm uses the stored u and v as they are."""
        matrix = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        sigma = torch.dot(self.weight_u, matrix @ self.weight_v)
        return self.weight_orig / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)


class SPADE(nn.Module):
    """InstanceNorm(x) * (1 + gamma(seg)) + beta(seg), seg resized (nearest) to x's size."""

    def __init__(self, channels: int, label_nc: int = 256, hidden: int = 128) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = F.instance_norm(x, eps=1e-5)
        actv = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin: int, fout: int, label_nc: int = 256) -> None:
        super().__init__()
        middle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = SpectralNormConv2d(fin, middle, 3, padding=1)
        self.conv_1 = SpectralNormConv2d(middle, fout, 3, padding=1)
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, 1, bias=False)
        self.norm_0 = SPADE(fin, label_nc)
        self.norm_1 = SPADE(middle, label_nc)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


class SPADEDecoder(nn.Module):
    def __init__(self, channels: int = 256, out_channels: int = 64) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        for i in range(6):
            setattr(self, f"G_middle_{i}", SPADEResnetBlock(2 * channels, 2 * channels, channels))
        self.up_0 = SPADEResnetBlock(2 * channels, channels, channels)
        self.up_1 = SPADEResnetBlock(channels, out_channels, channels)
        self.conv_img = nn.Conv2d(out_channels, 3, 3, padding=1)

    def forward(self, seg: torch.Tensor) -> torch.Tensor:
        x = self.fc(seg)
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, seg)
        x = self.up_0(F.interpolate(x, scale_factor=2.0), seg)
        x = self.up_1(F.interpolate(x, scale_factor=2.0), seg)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))


class OcclusionAwareSPADEGenerator(nn.Module):
    def __init__(self, block: int = 64, max_features: int = 512, down_blocks: int = 2,
                 reshape_channel: int = 32, reshape_depth: int = 16, resblocks: int = 6) -> None:
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(reshape_channel, 4, reshape_depth)
        self.first = SameBlock2d(3, block)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(min(max_features, block * (2 ** i)), min(max_features, block * (2 ** (i + 1))))
            for i in range(down_blocks))
        self.second = nn.Conv2d(block * (2 ** down_blocks), max_features, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channel))
        self.third = SameBlock2d(max_features, block * (2 ** down_blocks), lrelu=True)
        self.fourth = nn.Conv2d(block * (2 ** down_blocks), block * (2 ** down_blocks), 1)
        self.decoder = SPADEDecoder()
        self.reshape_channel = reshape_channel
        self.reshape_depth = reshape_depth

    def encode_source(self, image: torch.Tensor) -> torch.Tensor:
        out = self.first(image)
        for down in self.down_blocks:
            out = down(out)
        out = self.second(out)
        batch, _, height, width = out.shape
        return self.resblocks_3d(out.view(batch, self.reshape_channel, self.reshape_depth, height, width))

    def motion(self, feature_3d: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor):
        return self.dense_motion_network(feature_3d, kp_driving, kp_source)

    def decode(self, feature_3d: torch.Tensor, deformation: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        warped = F.grid_sample(feature_3d, deformation, align_corners=False)
        batch, channels, depth, height, width = warped.shape
        out = self.fourth(self.third(warped.reshape(batch, channels * depth, height, width)))
        return self.decoder(out * occlusion)

    def forward(self, image: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> torch.Tensor:
        feature_3d = self.encode_source(image)
        deformation, occlusion = self.motion(feature_3d, kp_driving, kp_source)
        return self.decode(feature_3d, deformation, occlusion)
