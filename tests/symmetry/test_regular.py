"""The regular-representation G-CNN: exact equivariance, and its layers against an independent construction."""

import pytest
import torch
import torch.nn.functional as F

from attndiff.diffusion.unet import UNet, count_parameters
from attndiff.symmetry import groups
from attndiff.symmetry.regular import Projection, RegularConv, relative_index

from .conftest import TINY, tiny_denoiser

SIGMAS = torch.tensor([0.05, 0.7, 20.0])
GEN = torch.Generator().manual_seed(3)


def _max_error(denoiser, group, x):
    out = denoiser(x, SIGMAS)
    assert out.abs().mean() > 1e-2  # every path carries signal: the check is not vacuous
    return max((denoiser(g(x), SIGMAS) - g(out)).abs().max().item() for g in group)


@pytest.mark.parametrize("name", ["C4", "D4", "H", "V", "trivial"])
@pytest.mark.parametrize("resolution", [16, 28, 32])
def test_regular_unet_is_equivariant_for_every_element(name, resolution):
    group = groups.get(name)
    x = torch.randn(3, 1, resolution, resolution, generator=torch.Generator().manual_seed(2))
    assert _max_error(tiny_denoiser(resolution, regular=group), group, x) < 1e-5


@pytest.mark.parametrize("fields", [4, 6])
def test_narrow_regular_unets_are_equivariant(fields):
    """The benchmark's widths: 4 fields (the plain 16-channel UNet's FLOPs) and 6 (not a multiple of 4)."""
    group = groups.get("C4")
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    assert _max_error(tiny_denoiser(16, regular=group, width=fields), group, x) < 1e-5


@pytest.mark.parametrize("resolution", [28, 32])
def test_the_same_check_fails_for_the_plain_unet(resolution):
    x = torch.randn(3, 1, resolution, resolution, generator=torch.Generator().manual_seed(2))
    assert _max_error(tiny_denoiser(resolution), groups.get("C4"), x) > 1e-2


def _regular_action(g, f, group, fields):
    """(g f)_h = g(f_{g^-1 h}) on a (B, fields * |G|, H, W) tensor."""
    maps = f.unflatten(1, (fields, len(group)))
    elements = list(group)
    moved = [g(maps[:, :, elements.index(g.inverse() @ h)]) for h in elements]
    return torch.stack(moved, 2).flatten(1, 2)


@pytest.mark.parametrize("name", ["C4", "D4"])
def test_group_conv_equals_moving_the_features_instead_of_the_kernel(name):
    """out_h = h(sum_u conv(h^-1 f_{h u}, W[u])): the input is moved, the free kernels are used as they are."""
    group = groups.get(name)
    conv = RegularConv(group, 3, 2, 3)
    f = torch.randn(2, 3 * len(group), 10, 10, generator=GEN)
    maps, elements = f.unflatten(1, (3, len(group))), list(group)
    expected = []
    for h in elements:
        total = sum(F.conv2d(h.inverse()(maps[:, :, elements.index(h @ u)]), conv.weight[:, :, j], padding=1)
                    for j, u in enumerate(elements))
        expected.append(h(total) + conv.bias[:, None, None])
    expected = torch.stack(expected, 2).flatten(1, 2)
    assert torch.allclose(conv(f), expected, atol=1e-5)


def test_lifting_conv_equals_convolving_moved_images():
    """out_h = h(conv(h^-1 x, W)) for the lifting layer."""
    group = groups.get("D4")
    conv = RegularConv(group, 2, 3, 3, lifting=True)
    x = torch.randn(2, 2, 12, 12, generator=GEN)
    expected = torch.stack([h(F.conv2d(h.inverse()(x), conv.weight[:, :, 0], conv.bias, padding=1))
                            for h in group], 2).flatten(1, 2)
    assert torch.allclose(conv(x), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["C4", "D4", "H"])
def test_each_layer_commutes_with_the_regular_action(name):
    group = groups.get(name)
    lift, conv, project = (RegularConv(group, 1, 4, 3, lifting=True), RegularConv(group, 4, 5, 3),
                           Projection(group, 5, 1))
    x = torch.randn(2, 1, 8, 8, generator=GEN)
    f = torch.randn(2, 4 * len(group), 8, 8, generator=GEN)
    out5 = torch.randn(2, 5 * len(group), 8, 8, generator=GEN)
    for g in group:
        assert torch.allclose(lift(g(x)), _regular_action(g, lift(x), group, 4), atol=1e-5)
        assert torch.allclose(conv(_regular_action(g, f, group, 4)), _regular_action(g, conv(f), group, 5), atol=1e-5)
        assert torch.allclose(project(_regular_action(g, out5, group, 5)), g(project(out5)), atol=1e-5)


def test_relative_index_is_a_latin_square_with_the_identity_on_the_diagonal():
    index = relative_index(groups.get("D4"))
    assert (index.diagonal() == 0).all()
    assert all(sorted(row.tolist()) == list(range(8)) for row in index)


def test_parameters_grow_with_the_group_and_kernels_are_oriented():
    plain = count_parameters(UNet(TINY, 1, 16))
    c4 = tiny_denoiser(16, regular=groups.get("C4")).net
    assert 3 * plain < count_parameters(c4) < 4.5 * plain  # C fields of |G| maps: about |G| x the parameters
    w = c4.down[0].res.conv0.full_weight()
    assert not torch.allclose(w, torch.rot90(w, 1, (-2, -1)))  # unlike weight tying, kernels need not be invariant


def _plain_conv(conv, x):
    return F.conv2d(x, conv.full_weight(), conv.full_bias(), padding=conv.k // 2)


def test_sampling_builds_the_full_kernel_once_per_weight_update():
    """Without autograd the full kernel is cached; an optimizer or EMA step, a load or a cast rebuilds it."""
    conv = RegularConv(groups.get("C4"), 2, 3)
    x = torch.randn(2, 2 * 4, 6, 6, generator=GEN)
    with torch.no_grad():
        before = conv(x)
        kept = conv.full()[0]
        assert conv.full()[0] is kept
        conv.weight.mul_(2)  # in place, as Adam and the EMA update
        assert not torch.allclose(conv(x), before)
        assert torch.allclose(conv(x), _plain_conv(conv, x))
        conv.load_state_dict({k: torch.randn_like(v) for k, v in conv.state_dict().items()})
        assert torch.allclose(conv(x), _plain_conv(conv, x))
        conv.double()
        assert conv(x.double()).dtype == torch.float64
    out = conv(x.double())  # with autograd: built afresh, gradients reach the free kernel
    out.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
