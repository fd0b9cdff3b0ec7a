"""SFBD's backward step against the closed form of Gaussian data N(mu, s^2 I)."""

import pytest
import torch

from attndiff.data.mixtures import GaussianMixture, two_modes
from attndiff.sfbd import backward
from attndiff.sfbd.backward import backward_sigmas

SIGMA = 0.59


def _posterior(gaussian, y):
    s2, t2 = gaussian.s**2, SIGMA**2
    return (s2 * y + t2 * gaussian.mu) / (s2 + t2), s2 * t2 / (s2 + t2)


def test_grids_start_at_sigma_and_end_at_zero():
    sigmas = backward_sigmas(SIGMA, 40, grid="truncated")
    assert sigmas[0].item() == torch.tensor(SIGMA).item() and sigmas[-1] == 0
    assert len(sigmas) == 16  # 14 of the 40 EDM points lie below 0.59, plus sigma and 0
    below = backward_sigmas(SIGMA, 15)
    assert len(below) == 16 and below[0].item() == torch.tensor(SIGMA).item() and below[-1] == 0
    assert below[-2].item() == pytest.approx(0.05 * SIGMA) and (below[:-1].diff() < 0).all()


def _stochastic_moments(gaussian, steps, **kwargs):
    y = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(5)) * 0.7
    ys = y.expand(6000, -1, -1, -1).contiguous()
    out = backward(gaussian, ys, SIGMA, steps=steps, generator=torch.Generator().manual_seed(0), batch_size=6000,
                   **kwargs)
    mean, var = _posterior(gaussian, y)
    return (out.mean(0) - mean[0]).abs().max().item(), (out.var(0) / var).mean().item()


def test_the_first_order_ancestral_step_converges_to_the_closed_form_posterior(gaussian):
    mean_err, var_ratio = _stochastic_moments(gaussian, steps=400, scheme="ancestral", grid="truncated")
    assert mean_err < 0.02
    assert abs(var_ratio - 1) < 0.08
    # first order in the step size: a finer grid is closer
    _, coarse_ratio = _stochastic_moments(gaussian, steps=100, scheme="ancestral", grid="truncated")
    assert abs(var_ratio - 1) < 0.6 * abs(coarse_ratio - 1)


@pytest.mark.parametrize("prior,y", [(two_modes(), 0.0), (two_modes(), 0.55),
                                     (GaussianMixture(torch.tensor([[0.2]]), torch.tensor([0.4]), torch.tensor([1.0])),
                                      0.5)])
def test_the_default_backward_step_samples_the_posterior(prior, y):
    """At the default setting (15 network evaluations) against the exact posterior of a mixture prior."""
    n = 20000
    out = backward(prior.denoiser, torch.full((n, 1, 1, 1), y), SIGMA, batch_size=n,
                   generator=torch.Generator().manual_seed(1)).flatten().double()
    w, means, var = prior.posterior(torch.tensor([[y]]), SIGMA)
    mean = (w[0] * means[0, :, 0]).sum()
    exact_var = (w[0] * (var[0] + means[0, :, 0] ** 2)).sum() - mean**2
    ratio = out.var() / exact_var
    assert abs(ratio - 1) < 0.05
    cdf = prior.posterior_cdf(torch.tensor(y), SIGMA, out.sort().values)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    assert torch.maximum(i / n - cdf, cdf - (i - 1) / n).max() < 0.03  # Kolmogorov-Smirnov distance
    # the first-order step at the same cost misses more of the variance
    first = backward(prior.denoiser, torch.full((n, 1, 1, 1), y), SIGMA, scheme="ancestral", batch_size=n,
                     generator=torch.Generator().manual_seed(1)).flatten().double()
    assert abs(first.var() / exact_var - 1) > 2 * abs(ratio - 1)


def test_deterministic_mode_maps_the_noisy_marginal_onto_the_data_marginal(gaussian):
    g = torch.Generator().manual_seed(3)
    x = gaussian.mu + gaussian.s * torch.randn(6000, 1, 4, 4, generator=g)
    y = x + SIGMA * torch.randn(x.shape, generator=g)
    out = backward(gaussian, y, SIGMA, steps=40, stochastic=False)
    # the probability-flow ODE of Gaussian data is the linear map mu + s (y - mu) / sqrt(s^2 + sigma^2)
    exact = gaussian.mu + gaussian.s * (y - gaussian.mu) / (gaussian.s**2 + SIGMA**2) ** 0.5
    assert (out - exact).abs().max() < 0.02
    assert (out.mean(0) - gaussian.mu[0]).abs().max() < 0.03
    assert (out.var(0) / gaussian.s**2 - 1).abs().max() < 0.1
    # ... and it is not a posterior sampler: one y always gives the same output
    same = backward(gaussian, y[:1].expand(8, -1, -1, -1), SIGMA, steps=40, stochastic=False)
    assert same.var(0).max() == 0


def test_per_image_seeds_make_results_independent_of_batching(gaussian):
    y = torch.randn(10, 1, 4, 4)
    a = backward(gaussian, y, SIGMA, steps=20, seeds=range(100, 110), batch_size=3)
    b = backward(gaussian, y, SIGMA, steps=20, seeds=range(100, 110), batch_size=10)
    torch.testing.assert_close(a, b)
    c = backward(gaussian, y[4:], SIGMA, steps=20, seeds=range(104, 110))
    torch.testing.assert_close(c, a[4:])
