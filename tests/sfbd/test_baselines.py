import pytest
import torch

from attndiff import UserError
from attndiff.diffusion.edm import Batch, EDMConfig
from attndiff.jobs.sfbd import SFBDJobConfig
from attndiff.jobs.sfbd_baselines import run_baseline
from attndiff.sfbd.baselines import ambient_loss

from ..conftest import GaussianDenoiser

SIGMA_ZETA = 0.59


def test_ambient_loss_trains_noisy_images_only_above_sigma_zeta(gaussian):
    seen = []

    def recording(x, sigma, labels=None):
        seen.append(sigma)
        return gaussian(x, sigma)

    x = torch.zeros(2000, 1, 4, 4)
    flags = torch.cat([torch.zeros(1000), torch.ones(1000)])
    ambient_loss(recording, Batch(x, extras={"noisy": flags}), cfg=EDMConfig(), sigma_zeta=SIGMA_ZETA,
                 generator=torch.Generator().manual_seed(0))
    sigma = seen[0]
    assert sigma[1000:].min() >= SIGMA_ZETA * (1 - 1e-6)
    assert (sigma[:1000] < SIGMA_ZETA).float().mean() > 0.3  # clean images keep the whole log-normal range


def test_the_clean_denoiser_minimises_the_ambient_loss_on_noisy_data(gaussian):
    g = torch.Generator().manual_seed(1)
    x0 = gaussian.mu + gaussian.s * torch.randn(20000, 1, 4, 4, generator=g)
    y = x0 + SIGMA_ZETA * torch.randn(x0.shape, generator=g)
    flags = torch.ones(len(y))

    def loss(denoiser):
        return ambient_loss(denoiser, Batch(y, extras={"noisy": flags}), cfg=EDMConfig(), sigma_zeta=SIGMA_ZETA,
                            generator=torch.Generator().manual_seed(2)).mean().item()

    exact = loss(gaussian)
    # a denoiser of the noisy distribution (what noisy-only training learns) and a too-sharp one both do worse
    blurred = GaussianDenoiser(gaussian.mu, (gaussian.s**2 + SIGMA_ZETA**2) ** 0.5)
    sharp = GaussianDenoiser(gaussian.mu, 0.7 * gaussian.s)
    assert exact < loss(blurred) and exact < loss(sharp)


def test_unknown_baseline_kind_is_a_user_error():
    with pytest.raises(UserError, match="unknown baseline kind"):
        run_baseline(SFBDJobConfig(), "magic")
