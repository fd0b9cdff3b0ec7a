import pytest
import torch

from attndiff.diffusion.sampling import PerSampleNoise, edm_sigmas, generate, sample, truncate_sigmas

N = 4000


def test_edm_grid():
    s = edm_sigmas(18, 0.002, 80.0, 7.0)
    assert len(s) == 19 and s[-1] == 0
    assert s[0].item() == pytest.approx(80.0) and s[-2].item() == pytest.approx(0.002)
    assert (s[1:] < s[:-1]).all()
    # rho = 7 spacing: sigma^(1/7) is linear in the step index
    r = s[:-1].double() ** (1 / 7)
    torch.testing.assert_close(r[1:] - r[:-1], (r[1] - r[0]).expand(17), rtol=1e-4, atol=1e-6)


def test_truncated_grid_starts_exactly_at_sigma():
    s = truncate_sigmas(edm_sigmas(40), 0.59)
    assert s[0].item() == torch.tensor(0.59).item()  # exactly sigma, not the nearest grid point
    assert (s[1:] < 0.59).all() and s[-1] == 0 and (s[1:] < s[:-1]).all()


def _moments(x):
    return x.mean(0), x.var(0)


@pytest.mark.parametrize("stochastic,churn", [(False, 0.0), (False, 40.0), (True, 0.0)])
def test_sampling_from_noise_gives_the_data_distribution(gaussian, stochastic, churn):
    steps = 200 if stochastic else 64
    sigmas = edm_sigmas(steps)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 1, 4, 4, generator=g) * sigmas[0]
    out = sample(gaussian, x, sigmas, stochastic=stochastic, churn=churn, generator=g)
    mean, var = _moments(out)
    assert (mean - gaussian.mu[0]).abs().max() < 0.04
    assert (var / gaussian.s**2 - 1).abs().max() < 0.12


@pytest.mark.parametrize("stochastic", [False, True])
def test_sampling_from_an_intermediate_sigma_gives_the_data_marginal(gaussian, stochastic):
    sigma = 0.59
    g = torch.Generator().manual_seed(2)
    x0 = gaussian.mu + gaussian.s * torch.randn(N, 1, 4, 4, generator=g)
    y = x0 + sigma * torch.randn(N, 1, 4, 4, generator=g)
    sigmas = truncate_sigmas(edm_sigmas(400 if stochastic else 40), sigma)
    out = sample(gaussian, y, sigmas, stochastic=stochastic, generator=g)
    mean, var = _moments(out)
    assert (mean - gaussian.mu[0]).abs().max() < 0.04
    assert (var / gaussian.s**2 - 1).abs().max() < 0.12


def test_heun_ode_converges_to_the_exact_flow_map_at_second_order(gaussian):
    """For Gaussian data the probability-flow ODE is linear: x_0 = mu + s (x_t - mu) / sqrt(s^2 + t^2)."""
    x = torch.randn(100, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 80.0
    exact = gaussian.mu + gaussian.s * (x - gaussian.mu) / (gaussian.s**2 + 80.0**2) ** 0.5
    errors = [(sample(gaussian, x, edm_sigmas(n)) - exact).abs().max().item() for n in (16, 32, 64, 128)]
    assert errors[-1] < 3e-3
    assert all(a / b > 3.0 for a, b in zip(errors, errors[1:])), errors  # halving h quarters the error


def test_ode_is_deterministic_and_sde_is_not(gaussian):
    sigmas = edm_sigmas(10)
    x = torch.randn(8, 1, 4, 4) * 80
    a = sample(gaussian, x, sigmas, generator=torch.Generator().manual_seed(0))
    b = sample(gaussian, x, sigmas, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    c = sample(gaussian, x, sigmas, stochastic=True, generator=torch.Generator().manual_seed(0))
    d = sample(gaussian, x, sigmas, stochastic=True, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(c, d)


def test_per_sample_seeds_make_results_independent_of_batch_size(gaussian):
    sigmas = edm_sigmas(8)
    kwargs = dict(stochastic=True, progress=False)
    a = generate(gaussian, 10, (1, 4, 4), sigmas, batch_size=3, **kwargs)
    b = generate(gaussian, 10, (1, 4, 4), sigmas, batch_size=10, **kwargs)
    torch.testing.assert_close(a, b)
    c = generate(gaussian, 4, (1, 4, 4), sigmas, seeds=[6, 7, 8, 9], **kwargs)
    torch.testing.assert_close(c, a[6:])
    with pytest.raises(ValueError):
        PerSampleNoise([1, 2])(torch.zeros(3, 1))


def test_churn_with_the_sde_is_rejected(gaussian):
    with pytest.raises(ValueError, match="churn applies to the deterministic"):
        sample(gaussian, torch.zeros(1, 1, 4, 4), edm_sigmas(2), stochastic=True, churn=1.0)


def test_denoising_from_under_sigma_min_is_one_step_to_the_denoiser():
    from attndiff.diffusion.sampling import denoise_sigmas

    assert denoise_sigmas(1e-9, 15).tolist() == pytest.approx([1e-9, 0.0])  # the grid must never climb
    grid = denoise_sigmas(0.59, 15)
    assert len(grid) == 16 and (grid.diff() < 0).all()
