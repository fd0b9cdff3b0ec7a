import dataclasses

import pytest
import torch

from attndiff.diffusion.edm import Precond
from attndiff.diffusion.unet import UNet, UNetConfig

TINY = UNetConfig(channels=8, channel_mult=(1, 2), num_blocks=1, attn_levels=(1,))


def perturbed(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, zero-initialised layers included, so every path carries signal."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return net


def tiny_denoiser(resolution: int = 16, tie=None, channels: int = 1, regular=None, width: int = 0) -> Precond:
    """A tiny UNet with random weights: plain, weight-tied to `tie` or on regular fields of `regular`
    (`width` fields, default TINY's channels)."""
    torch.manual_seed(0)
    if regular is not None:
        from attndiff.symmetry.regular import RegularLayers

        cfg = dataclasses.replace(TINY, channels=width or TINY.channels)
        return Precond(perturbed(UNet(cfg, channels, resolution, RegularLayers(regular))).eval())
    net = UNet(TINY, channels, resolution)
    if tie is not None:
        from attndiff.symmetry.layers import tie_weights

        tie_weights(net, tie)
    return Precond(perturbed(net).eval())


@pytest.fixture
def asymmetric_images():
    """Random images with no symmetry at all."""
    return torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
