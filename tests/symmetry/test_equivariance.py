"""Every group element, every method: D(g x) = g D(x) to 1e-5 in fp32."""

import pytest
import torch

from attndiff.diffusion.edm import EDMConfig, Precond, edm_noise
from attndiff.diffusion.unet import UNet, count_parameters
from attndiff.symmetry import groups
from attndiff.symmetry.averaging import equivariance_penalty, frame_average
from attndiff.symmetry.layers import kernel_orbits, tie_weights

from .conftest import TINY, perturbed, tiny_denoiser

GROUPS = ["C4", "D4", "H", "V", "trivial"]
SIGMAS = torch.tensor([0.05, 0.7, 20.0])


def _max_error(denoiser, group, x):
    out = denoiser(x, SIGMAS)
    return max((denoiser(g(x), SIGMAS) - g(out)).abs().max().item() for g in group)


@pytest.mark.parametrize("name", GROUPS)
@pytest.mark.parametrize("resolution", [8, 16, 28, 32])
def test_weight_tied_unet_is_equivariant_for_every_element(name, resolution):
    group = groups.get(name)
    d = tiny_denoiser(resolution, tie=group)
    x = torch.randn(3, 1, resolution, resolution, generator=torch.Generator().manual_seed(2))
    assert _max_error(d, group, x) < 1e-5


def test_plain_unet_is_not_equivariant(asymmetric_images):
    """The check can fail: without tying the same network is far from equivariant."""
    assert _max_error(tiny_denoiser(16), groups.get("C4"), asymmetric_images) > 1e-2


@pytest.mark.parametrize("name", GROUPS)
def test_frame_average_of_a_plain_unet_is_equivariant(name, asymmetric_images):
    group = groups.get(name)
    assert _max_error(frame_average(tiny_denoiser(16), group), group, asymmetric_images) < 1e-5


def test_frame_average_of_an_equivariant_denoiser_changes_nothing(asymmetric_images):
    d = tiny_denoiser(16, tie=groups.get("D4"))
    fa = frame_average(d, groups.get("D4"))
    assert torch.allclose(fa(asymmetric_images, SIGMAS), d(asymmetric_images, SIGMAS), atol=1e-5)


def test_d4_kernels_are_flip_invariant_not_just_rotation_invariant():
    """The reference code's D4 kernel doubled the rotation sum and was not flip-invariant."""
    net = tie_weights(perturbed(UNet(TINY, 1, 16)), groups.get("D4"))
    for w in (net.conv_in.weight, net.down[0].res.conv0.weight):
        for g in groups.get("D4"):
            assert torch.equal(g(w), w)
    index, n = kernel_orbits(groups.get("D4"), 3)
    assert n == 3 and index.tolist() == [[0, 1, 0], [1, 2, 1], [0, 1, 0]]
    assert kernel_orbits(groups.get("H"), 3)[1] == 6
    assert kernel_orbits(groups.get("C4"), 5)[1] == 7 and kernel_orbits(groups.get("D4"), 5)[1] == 6


def test_weight_tying_cuts_the_parameters_and_keeps_init_scale():
    torch.manual_seed(0)
    plain = UNet(TINY, 1, 16)
    torch.manual_seed(0)
    tied = tie_weights(UNet(TINY, 1, 16), groups.get("C4"))
    assert count_parameters(tied) < 0.6 * count_parameters(plain)
    ratio = tied.down[0].res.conv0.weight.std() / plain.down[0].res.conv0.weight.std()
    assert 0.7 < ratio < 1.3
    assert tied.conv_out.weight.abs().max() == 0  # zero-initialised layers stay zero


def test_regulariser_is_zero_for_an_equivariant_network_and_not_otherwise(asymmetric_images):
    group = groups.get("C4")
    sigma, x_t, _ = edm_noise(asymmetric_images, EDMConfig(), torch.Generator().manual_seed(0))
    for k in range(4):  # whichever element is drawn
        gen = torch.Generator().manual_seed(k)
        wt = tiny_denoiser(16, tie=group)
        assert equivariance_penalty(wt, wt, group, x_t, sigma, generator=gen).max() < 1e-10
    plain = tiny_denoiser(16)
    penalties = [equivariance_penalty(plain, plain, group, x_t, sigma, generator=torch.Generator().manual_seed(s))
                 for s in range(8)]
    assert max(p.max().item() for p in penalties) > 1e-3


def test_training_noise_levels_follow_the_configured_log_normal():
    """The reference code's time sampler left its schedule's range; EDM's sigma is log-normal by design."""
    cfg = EDMConfig()
    sigma, _, _ = edm_noise(torch.zeros(20000, 1, 1, 1), cfg, torch.Generator().manual_seed(0))
    logs = sigma.log()
    assert torch.isfinite(sigma).all() and (sigma > 0).all()
    assert abs(logs.mean() - cfg.p_mean) < 0.03 and abs(logs.std() - cfg.p_std) < 0.03


def test_tied_model_survives_a_state_dict_round_trip(asymmetric_images):
    group = groups.get("C4")
    a = tiny_denoiser(16, tie=group)
    torch.manual_seed(5)
    b = Precond(tie_weights(UNet(TINY, 1, 16), group).eval())
    b.net.load_state_dict(a.net.state_dict())
    assert torch.equal(a(asymmetric_images, SIGMAS), b(asymmetric_images, SIGMAS))
