"""The renderer's fast path: the same function as the plain generator, with fewer FLOPs.

`optimise_generator(generator)` rewrites a loaded OcclusionAwareSPADEGenerator in place; every
change is an exact identity (outputs differ by float rounding only, tested against the plain
modules on the same weights):

- Spectral norm folded once: W = weight_orig / (u . W v) (eval mode does no power iteration).
- Eval BatchNorm folded into the conv before it (conv -> BN blocks of the encoder, the
  dense-motion hourglass, compress, third).
- SPADE's `1 + gamma` folded into the gamma conv's bias; gamma and beta convs merged into one.
- Every SPADE block reads the same segmentation map, so the twelve mlp_shared convs of the
  six 64x64 blocks run as one 256 -> 1536 conv.
- In up_0 / up_1 the map is nearest-upsampled x2 / x4 before a 3x3 conv. Such a conv is a
  set of smaller convs on the low-resolution map, one per output phase (sub-pixel), whose
  taps are sums of the original taps: 16 instead of 36 taps per low-res pixel at x2, 25
  instead of 144 at x4 (only 3 distinct row and column phases exist at x4).
- The learned shortcut's 1x1 conv_s is linear, so conv_s(beta_s) is one 3x3 conv
  (128 -> fout) instead of 128 -> fin then fin -> fout.
- channels_last memory format for the 2D decoder (faster oneDNN kernels on this CPU).
- The two upsampling blocks run in horizontal strips (3x3 halos recomputed, instance-norm
  statistics taken whole), so their biggest tensors (2 x 512 gamma/beta channels at 128x128,
  2 x 256 at 256x256) never exist for the whole frame: the x2 input is upsampled strip by strip
  and its statistics are the low-resolution map's (nearest upsampling repeats every value 4x).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.pipelines.animation.networks import generator as plain

CHANNELS_LAST = torch.channels_last


def _fold_batchnorm(conv: nn.Module, norm: nn.Module) -> None:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    conv.weight = nn.Parameter(conv.weight * scale.view(shape), requires_grad=False)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias, requires_grad=False)


def fold_batchnorms(module: nn.Module) -> None:
    """conv -> norm pairs whose forward is norm(conv(x)): fold and make norm an Identity."""
    pairs = [(m, "conv", "norm") for m in module.modules()
             if isinstance(m, (plain.SameBlock2d, plain.DownBlock2d, plain.DownBlock3d, plain.HourglassDecoder,
                               plain.UpBlock3d))]
    pairs += [(m, "compress", "norm") for m in module.modules() if isinstance(m, plain.DenseMotionNetwork)]
    for owner, conv_name, norm_name in pairs:
        norm = getattr(owner, norm_name)
        if isinstance(norm, nn.Identity):
            continue
        _fold_batchnorm(getattr(owner, conv_name), norm)
        setattr(owner, norm_name, nn.Identity())


def phase_taps(factor: int) -> list[tuple[int, list[list[int]]]]:
    """Distinct sub-pixel phases of nearest-x`factor` then a 3-tap conv (pad 1).

    Returns [(first low-res offset, [[original taps summed into low-res tap j] for j]), ...];
    phase p's output at low-res i reads low-res rows i + offset + j.
    """
    phases = []
    for p in range(factor):
        groups: dict[int, list[int]] = {}
        for k in (-1, 0, 1):
            groups.setdefault((p + k) // factor, []).append(k + 1)
        offsets = sorted(groups)
        phases.append((offsets[0], [groups[o] for o in offsets]))
    return phases


class PhaseConv(nn.Module):
    """conv3x3(nearest_upsample(x, factor), pad 1) computed on x, one small conv per distinct phase."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.row_phases = phase_taps(factor)
        unique = []
        for phase in self.row_phases:
            if phase not in unique:
                unique.append(phase)
        self.unique = unique
        self.row_of_phase = [unique.index(phase) for phase in self.row_phases]
        kernels = {}
        for a, (_, rows) in enumerate(unique):
            for b, (_, cols) in enumerate(unique):
                k = torch.stack([torch.stack([weight[:, :, r][:, :, :, c].sum((2, 3)) for c in cols], -1)
                                 for r in rows], -2)  # (out, in, len(rows), len(cols))
                kernels[(a, b)] = k.contiguous(memory_format=CHANNELS_LAST)
        self.kernels = kernels
        self.bias = bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: the low-resolution map already zero-padded by 1 on every side."""
        batch, _, height, width = x.shape
        height, width = height - 2, width - 2
        f = self.factor
        # written straight into NHWC order: the result is a channels_last view, no extra copy
        out = torch.empty(batch, height, f, width, f, self.bias.shape[0], dtype=x.dtype)
        results = {}
        for (a, b), kernel in self.kernels.items():
            oy, ox = self.unique[a][0], self.unique[b][0]
            ky, kx = kernel.shape[2], kernel.shape[3]
            # x is padded by 1: output i reads padded rows i+1+oy .. i+oy+ky (zeros outside, as at high res)
            window = x[:, :, 1 + oy:1 + oy + height + ky - 1, 1 + ox:1 + ox + width + kx - 1]
            results[(a, b)] = F.conv2d(window, kernel, self.bias).permute(0, 2, 3, 1)
        for py in range(f):
            for px in range(f):
                out[:, :, py, :, px] = results[(self.row_of_phase[py], self.row_of_phase[px])]
        return out.view(batch, height * f, width * f, -1).permute(0, 3, 1, 2)


def _conv_weight(conv: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(conv, plain.SpectralNormConv2d):
        return conv.effective_weight().detach(), None if conv.bias is None else conv.bias.detach()
    return conv.weight.detach(), None if conv.bias is None else conv.bias.detach()


class FastSPADEBlock(nn.Module):
    """SPADEResnetBlock with folded weights; mlp_shared activations are passed in."""

    def __init__(self, block: plain.SPADEResnetBlock) -> None:
        super().__init__()
        cl = CHANNELS_LAST

        def merged(spade: plain.SPADE) -> tuple[torch.Tensor, torch.Tensor]:
            gamma_w, gamma_b = spade.mlp_gamma.weight.detach(), spade.mlp_gamma.bias.detach() + 1  # 1 + gamma
            beta_w, beta_b = spade.mlp_beta.weight.detach(), spade.mlp_beta.bias.detach()
            return torch.cat([gamma_w, beta_w]).contiguous(memory_format=cl), torch.cat([gamma_b, beta_b])

        self.gb0_w, self.gb0_b = merged(block.norm_0)
        self.gb1_w, self.gb1_b = merged(block.norm_1)
        w, b = _conv_weight(block.conv_0)
        self.conv0_w, self.conv0_b = w.contiguous(memory_format=cl), b
        w, b = _conv_weight(block.conv_1)
        self.conv1_w, self.conv1_b = w.contiguous(memory_format=cl), b
        self.learned_shortcut = block.learned_shortcut
        if self.learned_shortcut:
            conv_s = _conv_weight(block.conv_s)[0]  # (fout, fin, 1, 1), no bias
            self.gs_w = block.norm_s.mlp_gamma.weight.detach().contiguous(memory_format=cl)
            self.gs_b = block.norm_s.mlp_gamma.bias.detach() + 1
            self.convs_w = conv_s.contiguous(memory_format=cl)
            matrix = conv_s[:, :, 0, 0]
            beta_w, beta_b = block.norm_s.mlp_beta.weight.detach(), block.norm_s.mlp_beta.bias.detach()
            self.bs_w = torch.einsum("oc,cikl->oikl", matrix, beta_w).contiguous(memory_format=cl)
            self.bs_b = matrix @ beta_b

    @staticmethod
    def _modulate(normalized: torch.Tensor, gamma_beta: torch.Tensor) -> torch.Tensor:
        gamma, beta = gamma_beta.chunk(2, dim=1)
        return torch.addcmul(beta, normalized, gamma)

    def forward(self, x: torch.Tensor, actv0: torch.Tensor, actv1: torch.Tensor,
                actv_s: torch.Tensor | None = None) -> torch.Tensor:
        normalized = F.instance_norm(x, eps=1e-5)
        if self.learned_shortcut:
            gamma_s = F.conv2d(actv_s, self.gs_w, self.gs_b, padding=1)
            shortcut = F.conv2d(normalized * gamma_s, self.convs_w)
            del gamma_s
            shortcut += F.conv2d(actv_s, self.bs_w, self.bs_b, padding=1)
        else:
            shortcut = x
        dx = self._modulate(normalized, F.conv2d(actv0, self.gb0_w, self.gb0_b, padding=1))
        del normalized
        dx = F.conv2d(F.leaky_relu_(dx, 0.2), self.conv0_w, self.conv0_b, padding=1)
        dx = self._modulate(F.instance_norm(dx, eps=1e-5), F.conv2d(actv1, self.gb1_w, self.gb1_b, padding=1))
        dx = F.conv2d(F.leaky_relu_(dx, 0.2), self.conv1_w, self.conv1_b, padding=1)
        return dx.add_(shortcut)


STRIP_ELEMENTS = 3_000_000  # per strip tensor of the up blocks (x4 bytes): ~12 MB; halo rows cost ~5% of their convs


def _rows(t: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """t[:, :, start:stop] with zero rows where the range leaves the image (a conv's zero padding)."""
    height = t.shape[2]
    inner = t[:, :, max(start, 0):min(stop, height)]
    top, bottom = max(0, -start), max(0, stop - height)
    return F.pad(inner, (0, 0, top, bottom)) if top or bottom else inner


def _stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance-norm mean and 1/std (biased variance, eps 1e-5) per (sample, channel)."""
    var, mean = torch.var_mean(t, dim=(2, 3), unbiased=False, keepdim=True)
    return mean, torch.rsqrt(var + 1e-5)


def upsampled_strips(block: "FastSPADEBlock", x_low: torch.Tensor, phase_convs: nn.ModuleList, seg_padded: torch.Tensor,
                     strip_rows: int) -> torch.Tensor:
    """block(interpolate(x_low, x2), *actv) computed in horizontal strips; exact.

    The x2 map, its normalisation, gamma/beta (2 x C channels) and the modulated activations
    exist only one strip (+ halo rows) at a time; what crosses strips is the 3x3 halo and the
    instance-norm statistics, which for a nearest-upsampled map equal the low-res map's.
    """
    def activation(index: int) -> torch.Tensor:  # mlp_shared of norm_0 / norm_1 / norm_s, made when needed
        return F.relu_(phase_convs[index](seg_padded))

    actv0, actv_s = activation(0), activation(2)
    batch, _, low_h, low_w = x_low.shape
    height, width = 2 * low_h, 2 * low_w
    mean, rstd = _stats(x_low)

    def normalized_rows(a: int, b: int) -> torch.Tensor:
        lo, hi = a // 2, (b + 1) // 2
        up = F.interpolate(x_low[:, :, lo:hi], scale_factor=2.0)[:, :, a - 2 * lo:b - 2 * lo]
        return (up - mean) * rstd

    dx0 = torch.empty(batch, block.conv0_w.shape[0], height, width, dtype=x_low.dtype)
    out = torch.empty(batch, block.conv1_w.shape[0], height, width, dtype=x_low.dtype)
    for r0 in range(0, height, strip_rows):
        r1 = min(r0 + strip_rows, height)
        a, b = max(r0 - 1, 0), min(r1 + 1, height)
        xn = normalized_rows(a, b)
        gb = F.conv2d(_rows(actv0, a - 1, b + 1), block.gb0_w, block.gb0_b, padding=(0, 1))
        h = F.leaky_relu_(FastSPADEBlock._modulate(xn, gb), 0.2)
        del gb
        dx0[:, :, r0:r1] = F.conv2d(_rows(h, r0 - 1 - a, r1 + 1 - a), block.conv0_w, block.conv0_b, padding=(0, 1))
        del h
        inner = xn[:, :, r0 - a:r1 - a]
        gamma_s = F.conv2d(_rows(actv_s, r0 - 1, r1 + 1), block.gs_w, block.gs_b, padding=(0, 1))
        shortcut = F.conv2d(inner * gamma_s, block.convs_w)
        del gamma_s
        shortcut += F.conv2d(_rows(actv_s, r0 - 1, r1 + 1), block.bs_w, block.bs_b, padding=(0, 1))
        out[:, :, r0:r1] = shortcut
        del xn, inner, shortcut
    del actv0, actv_s
    actv1 = activation(1)
    mean, rstd = _stats(dx0)
    for r0 in range(0, height, strip_rows):
        r1 = min(r0 + strip_rows, height)
        a, b = max(r0 - 1, 0), min(r1 + 1, height)
        gb = F.conv2d(_rows(actv1, a - 1, b + 1), block.gb1_w, block.gb1_b, padding=(0, 1))
        h = F.leaky_relu_(FastSPADEBlock._modulate((dx0[:, :, a:b] - mean) * rstd, gb), 0.2)
        del gb
        out[:, :, r0:r1] += F.conv2d(_rows(h, r0 - 1 - a, r1 + 1 - a), block.conv1_w, block.conv1_b, padding=(0, 1))
        del h
    return out


class FastSPADEDecoder(nn.Module):
    def __init__(self, decoder: plain.SPADEDecoder) -> None:
        super().__init__()
        cl = CHANNELS_LAST
        self.fc_w, self.fc_b = decoder.fc.weight.detach().contiguous(memory_format=cl), decoder.fc.bias.detach()
        middle = [getattr(decoder, f"G_middle_{i}") for i in range(6)]
        shared = [spade.mlp_shared[0] for block in middle for spade in (block.norm_0, block.norm_1)]
        self.mid_shared_w = torch.cat([c.weight.detach() for c in shared]).contiguous(memory_format=cl)
        self.mid_shared_b = torch.cat([c.bias.detach() for c in shared])
        self.hidden = shared[0].weight.shape[0]
        del middle, shared
        # convert block by block and drop each plain block at once: no second copy of the decoder
        self.middle = nn.ModuleList()
        for i in range(6):
            self.middle.append(FastSPADEBlock(getattr(decoder, f"G_middle_{i}")))
            setattr(decoder, f"G_middle_{i}", None)
        self.up, self.up_shared = nn.ModuleList(), nn.ModuleList()
        for name, factor in (("up_0", 2), ("up_1", 4)):
            block = getattr(decoder, name)
            self.up.append(FastSPADEBlock(block))
            self.up_shared.append(nn.ModuleList(
                PhaseConv(spade.mlp_shared[0].weight.detach(), spade.mlp_shared[0].bias.detach(), factor)
                for spade in (block.norm_0, block.norm_1, block.norm_s)))
            setattr(decoder, name, None)
            del block
        self.img_w = decoder.conv_img.weight.detach().contiguous(memory_format=cl)
        self.img_b = decoder.conv_img.bias.detach()

    def forward(self, seg: torch.Tensor) -> torch.Tensor:
        seg = seg.contiguous(memory_format=CHANNELS_LAST)
        x = F.conv2d(seg, self.fc_w, self.fc_b, padding=1)
        shared = F.relu_(F.conv2d(seg, self.mid_shared_w, self.mid_shared_b, padding=1))
        h = self.hidden
        for i, block in enumerate(self.middle):
            x = block(x, shared[:, 2 * i * h:(2 * i + 1) * h], shared[:, (2 * i + 1) * h:(2 * i + 2) * h])
        del shared
        seg_padded = F.pad(seg, (1, 1, 1, 1))
        for block, phase_convs in zip(self.up, self.up_shared, strict=True):
            strip_rows = max(8, STRIP_ELEMENTS // (block.gb0_w.shape[0] * 2 * x.shape[3] * x.shape[0]))
            x = upsampled_strips(block, x, phase_convs, seg_padded, strip_rows)
        return torch.sigmoid(F.conv2d(F.leaky_relu(x, 0.2), self.img_w, self.img_b, padding=1))


def optimise_generator(generator: plain.OcclusionAwareSPADEGenerator) -> plain.OcclusionAwareSPADEGenerator:
    """Rewrite in place (the plain weights it replaces are dropped) and return it."""
    with torch.no_grad():
        fold_batchnorms(generator)
        generator.decoder = FastSPADEDecoder(generator.decoder)
    return generator.eval()
