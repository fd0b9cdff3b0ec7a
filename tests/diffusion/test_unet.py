import pytest
import torch

from attndiff import UserError
from attndiff.diffusion.edm import Precond
from attndiff.diffusion.unet import UNet, UNetConfig

TINY = dict(channels=8, channel_mult=(1, 2), num_blocks=1, attn_levels=(1,))


@pytest.mark.parametrize("resolution,channels", [(8, 1), (28, 1), (32, 3), (64, 3)])
def test_shapes_at_every_supported_resolution(resolution, channels):
    net = UNet(UNetConfig(**TINY), channels, resolution)
    x = torch.randn(2, channels, resolution, resolution)
    out = Precond(net)(x, torch.tensor([0.5, 3.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_three_levels_at_28_pixels_and_class_conditioning():
    net = UNet(UNetConfig(channels=8, channel_mult=(1, 2, 2), num_blocks=1, attn_levels=(2,), num_classes=10), 1, 28)
    x = torch.randn(3, 1, 28, 28)
    a = net(x, torch.zeros(3), torch.tensor([0, 1, 2]))
    assert a.shape == x.shape
    # residual branches and the output layer start at zero; perturb them so the labels can show
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    assert not torch.allclose(net(x, torch.zeros(3), torch.tensor([0, 1, 2])),
                              net(x, torch.zeros(3), torch.tensor([3, 4, 5])))
    with pytest.raises(ValueError):
        net(x, torch.zeros(3))


def test_resolution_that_cannot_be_halved_is_a_clear_error():
    with pytest.raises(UserError, match="cannot be halved"):
        UNet(UNetConfig(channels=8, channel_mult=(1, 2, 2, 2)), 1, 28)


@pytest.mark.parametrize("channels", [3, 5])
def test_odd_or_too_few_channels_are_a_clear_error(channels):
    with pytest.raises(UserError, match="even and >= 4"):
        UNetConfig(channels=channels).validate()


@pytest.mark.parametrize("channels", [4, 6, 12, 20, 48])
def test_widths_whose_skips_are_not_a_multiple_of_32_build_and_run(channels):
    """GroupNorm takes the most groups (up to 32, at least 4 channels each) that divide a layer's
    width: a 48-channel UNet concatenates 144-channel skips, which 32 groups do not divide."""
    from attndiff.diffusion.unet import norm_groups

    assert [norm_groups(c) for c in (16, 32, 64, 128, 144, 8)] == [4, 8, 16, 32, 24, 2]
    net = UNet(UNetConfig(channels=channels, channel_mult=(1, 2, 2), num_blocks=1, attn_levels=(2,)), 1, 16)
    x = torch.randn(2, 1, 16, 16)
    assert net(x, torch.zeros(2)).shape == x.shape
