import math

import pytest
import torch

from attndiff import UserError
from attndiff.data.mixtures import GaussianMixture, mixture, two_modes

from ..conftest import GaussianDenoiser


def test_one_component_has_the_gaussian_closed_forms():
    mu = torch.linspace(-0.5, 0.5, 16)
    mix = GaussianMixture(mu[None], torch.tensor([0.4]), torch.tensor([1.0]))
    x = torch.randn(5, 1, 4, 4)
    torch.testing.assert_close(mix.denoiser(x, 0.7), GaussianDenoiser(mu.reshape(1, 1, 4, 4), 0.4)(x, 0.7))
    expected = torch.distributions.Normal(mu, (0.4**2 + 0.7**2) ** 0.5).log_prob(x.flatten(1)).sum(1)
    torch.testing.assert_close(mix.log_prob(x, 0.7), expected.double(), rtol=1e-6, atol=1e-6)


def test_two_modes_density_posterior_and_samples_agree():
    mix = two_modes()
    grid = torch.linspace(-3, 3, 20001)[:, None]
    assert (mix.log_prob(grid).exp().sum() * 6 / 20000).item() == pytest.approx(1.0, abs=1e-4)
    cdf = mix.posterior_cdf(torch.tensor(0.1), 0.59, torch.tensor([-5.0, 0.0, 5.0]))
    assert cdf[0] < 1e-9 and 0 < cdf[1] < 1 and cdf[2] > 1 - 1e-9
    x, comp = mix.sample(20000, torch.Generator().manual_seed(0))
    assert abs(comp.float().mean().item() - 0.5) < 0.02 and abs(x.mean().item()) < 0.02
    assert x.std().item() == pytest.approx(math.sqrt(0.6**2 + 0.15**2), rel=0.02)


def test_bad_mixtures_are_user_errors():
    with pytest.raises(UserError):
        GaussianMixture(torch.zeros(2, 1), torch.tensor([0.1, -0.1]), torch.tensor([0.5, 0.5]))
    with pytest.raises(UserError):
        GaussianMixture(torch.zeros(2, 1), torch.tensor([0.1, 0.1]), torch.tensor([0.5, 0.6]))


def test_the_curve_is_a_thin_tube_around_an_isometrically_embedded_closed_curve():
    mix = mixture("curve-16d")
    t = torch.arange(128, dtype=torch.float64) * (2 * math.pi / 128)
    curve = torch.stack([t.cos(), t.sin(), 0.5 * (3 * t).sin()], 1)
    # the embedding keeps every distance between points of the curve: it is orthonormal
    assert torch.allclose(torch.cdist(mix.means.double(), mix.means.double()), torch.cdist(curve, curve), atol=1e-5)
    x, _ = mix.sample(4000, torch.Generator().manual_seed(0))
    to_curve = torch.cdist(x, mix.means).min(1).values
    assert to_curve.quantile(0.99) < 0.04 * 6.5  # within the tube (16-d noise of std 0.04 has norm about 0.16)
    assert x.flatten(1).std(0).mean() == pytest.approx(0.25, abs=0.01)  # the scale the config's sigma_zeta uses
