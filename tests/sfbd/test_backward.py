"""SFBD's backward step against the closed form of Gaussian data N(mu, s^2 I)."""

import torch

from attndiff.sfbd import backward
from attndiff.sfbd.backward import backward_sigmas

SIGMA = 0.59


def _posterior(gaussian, y):
    s2, t2 = gaussian.s**2, SIGMA**2
    return (s2 * y + t2 * gaussian.mu) / (s2 + t2), s2 * t2 / (s2 + t2)


def test_grid_is_the_truncated_edm_grid():
    sigmas = backward_sigmas(SIGMA, 40)
    assert sigmas[0].item() == torch.tensor(SIGMA).item() and sigmas[-1] == 0
    assert len(sigmas) == 16  # 14 of the 40 EDM points lie below 0.59, plus sigma and 0


def _stochastic_moments(gaussian, steps):
    y = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(5)) * 0.7
    ys = y.expand(6000, -1, -1, -1).contiguous()
    out = backward(gaussian, ys, SIGMA, steps=steps, generator=torch.Generator().manual_seed(0), batch_size=6000)
    mean, var = _posterior(gaussian, y)
    return (out.mean(0) - mean[0]).abs().max().item(), (out.var(0) / var).mean().item()


def test_stochastic_mode_samples_the_closed_form_posterior(gaussian):
    mean_err, var_ratio = _stochastic_moments(gaussian, steps=400)
    assert mean_err < 0.02
    assert abs(var_ratio - 1) < 0.08
    # the ancestral SDE step is first order in the step size: a finer grid is closer
    _, coarse_ratio = _stochastic_moments(gaussian, steps=100)
    assert abs(var_ratio - 1) < 0.6 * abs(coarse_ratio - 1)


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
