"""Invariant sampling and orientation-free denoising: transform the start and every injected
noise by g and the output is transformed by g."""

import pytest
import torch

from attndiff.diffusion.sampling import denoise, edm_sigmas, gaussian_noise, sample
from attndiff.symmetry import groups

from .conftest import tiny_denoiser

D4 = groups.get("D4")


def _noise(seed, g=None):
    base = gaussian_noise(torch.Generator().manual_seed(seed))
    return base if g is None else (lambda like: g(base(like)))


@pytest.fixture(scope="module")
def wt():
    return tiny_denoiser(16, tie=D4)


@pytest.mark.parametrize("stochastic,churn", [(False, 0.0), (False, 5.0), (True, 0.0)])
def test_sampler_commutes_with_every_element(wt, stochastic, churn):
    x_T = 80 * torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    sigmas = edm_sigmas(6)
    plain = sample(wt, x_T, sigmas, stochastic=stochastic, churn=churn, noise=_noise(1))
    for g in D4:
        moved = sample(wt, g(x_T), sigmas, stochastic=stochastic, churn=churn, noise=_noise(1, g))
        assert (moved - g(plain)).abs().max() < 1e-4 * plain.abs().max()


def test_denoising_a_transformed_image_gives_the_transformed_result(wt, asymmetric_images):
    noise = torch.randn(asymmetric_images.shape, generator=torch.Generator().manual_seed(3))
    y = asymmetric_images * 0.5 + 0.59 * noise
    for stochastic in (True, False):
        ref = denoise(wt, y, 0.59, steps=20, stochastic=stochastic, noise=_noise(4))
        for g in D4:
            out = denoise(wt, g(y), 0.59, steps=20, stochastic=stochastic, noise=_noise(4, g))
            assert (out - g(ref)).abs().max() < 1e-4


def test_without_transformed_noise_the_stochastic_paths_differ(wt, asymmetric_images):
    """The noise condition matters: the same (untransformed) noise breaks pointwise equivariance."""
    g = D4.elements[1]
    ref = denoise(wt, asymmetric_images, 0.59, steps=20, noise=_noise(4))
    out = denoise(wt, g(asymmetric_images), 0.59, steps=20, noise=_noise(4))
    assert (out - g(ref)).abs().max() > 1e-2
