"""The fast renderer computes the plain renderer's function: same random weights, same frames.

The decoder's rewrites (merged SPADE convs, phase convs, strips) are checked on a narrow decoder
in the default run; the whole real-shape generator (BatchNorm and spectral-norm folds too) is slow.
"""
import copy

import pytest
import torch

from backend.pipelines.animation.checkpoints import build_empty
from backend.pipelines.animation.fast_generator import PhaseConv, optimise_generator
from scripts.checkpoints.sadtalker import random_state

TOLERANCE_MAX_ABS = 1e-4  # output is in [0, 1]; fp32 rounding of reordered sums stays far below 1/255


@pytest.mark.parametrize("factor", [2, 4])
def test_phase_conv_is_upsample_then_conv(factor):
    torch.manual_seed(factor)
    weight, bias, x = torch.randn(5, 3, 3, 3), torch.randn(5), torch.randn(2, 3, 7, 6)
    expected = torch.nn.functional.conv2d(torch.nn.functional.interpolate(x, scale_factor=factor), weight, bias,
                                          padding=1)
    got = PhaseConv(weight, bias, factor)(torch.nn.functional.pad(x, (1, 1, 1, 1)))
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-5


def test_fast_decoder_matches_plain_on_a_narrow_decoder(monkeypatch):
    from backend.pipelines.animation import fast_generator
    from backend.pipelines.animation.networks.generator import SPADEDecoder, SpectralNormConv2d

    torch.manual_seed(0)
    plain = SPADEDecoder(channels=16, out_channels=8).eval().requires_grad_(False)
    for module in plain.modules():
        if isinstance(module, SpectralNormConv2d):  # u, v as a trained checkpoint holds them
            matrix = module.weight_orig.reshape(module.weight_orig.shape[0], -1)
            for _ in range(5):
                module.weight_u = torch.nn.functional.normalize(matrix @ module.weight_v, dim=0)
                module.weight_v = torch.nn.functional.normalize(matrix.T @ module.weight_u, dim=0)
    seg = torch.randn(2, 16, 20, 20)
    with torch.inference_mode():
        expected = plain(seg)
    monkeypatch.setattr(fast_generator, "STRIP_ELEMENTS", 1)  # 8-row strips: the halo seams are exercised
    fast = fast_generator.FastSPADEDecoder(copy.deepcopy(plain))
    with torch.inference_mode():
        got = fast(seg)
    assert got.shape == expected.shape == (2, 3, 80, 80)
    error = (got - expected).abs()
    assert error.max() < TOLERANCE_MAX_ABS, f"max {error.max():.2e} mean {error.mean():.2e}"
    assert expected.std() > 0.01


@pytest.mark.slow
def test_fast_generator_matches_plain_on_real_shapes():
    torch.manual_seed(0)
    plain = build_empty("generator")
    plain.load_state_dict(random_state("generator"), assign=True)
    plain.eval().requires_grad_(False)
    fast = optimise_generator(copy.deepcopy(plain))
    image = torch.rand(1, 3, 128, 128)  # every layer at its real width; 128 px keeps the test fast
    kp_source = torch.rand(1, 15, 3) * 1.4 - 0.7
    kp_driving = kp_source.expand(2, -1, -1) + torch.randn(2, 15, 3) * 0.05
    with torch.inference_mode():
        expected = plain(image.expand(2, -1, -1, -1), kp_driving, kp_source.expand(2, -1, -1))
        feature = fast.encode_source(image).expand(2, -1, -1, -1, -1)
        deformation, occlusion = fast.motion(feature, kp_driving, kp_source.expand(2, -1, -1))
        got = fast.decode(feature, deformation, occlusion)
    error = (got - expected).abs()
    assert error.max() < TOLERANCE_MAX_ABS, f"max {error.max():.2e} mean {error.mean():.2e}"
    assert expected.std() > 0.01  # not a constant image: the comparison means something
