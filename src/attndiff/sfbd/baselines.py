"""SFBD's baselines, each trained for the same number of steps (images seen) as the SFBD run:

- clean-only: the clean part alone (the pretrained model trained on);
- noisy-only: the noisy images as if they were clean;
- ambient: noisy images used only at noise levels >= sigma_zeta, through the ambient loss
  below, plus the clean images at all levels (the "consistent diffusion meets Tweedie" family);
- oracle: every training image clean (the originals of the noisy part are used: an upper bound).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch

from attndiff import UserError
from attndiff.diffusion.edm import Batch, EDMConfig, append_dims, edm_weight, randn
from attndiff.sfbd.noisy import NoisySplit


def ambient_loss(denoiser, batch: Batch, *, cfg: EDMConfig, sigma_zeta: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample EDM loss where noisy samples (batch.extras["noisy"], already at sigma_zeta) are
    trained only at sigma >= sigma_zeta.

    A noisy y = x0 + sigma_zeta e is taken up to x_t = y + sqrt(sigma^2 - sigma_zeta^2) n. Since
    E[y | x_t] = b x_t + a E[x0 | x_t] with b = sigma_zeta^2 / sigma^2 and a = 1 - b, regressing
    a D(x_t) + b x_t onto y has the clean denoiser E[x0 | x_t] as its minimiser. Clean samples
    have a = 1, b = 0: the ordinary EDM loss. sigma for noisy samples is the EDM log-normal
    truncated below at sigma_zeta (inverse-CDF sampling).
    """
    x = batch.x
    n = x.shape[0]
    normal = torch.distributions.Normal(cfg.p_mean, cfg.p_std)
    floor = normal.cdf(torch.tensor(math.log(sigma_zeta)))
    u = torch.rand(n, generator=generator).to(x.device)
    ln_clean = randn(n, generator, x.device) * cfg.p_std + cfg.p_mean
    ln_noisy = normal.icdf((floor + u * (1 - floor)).clamp(max=1 - 1e-7))
    noisy = batch.extras["noisy"].to(x.device).bool()
    sigma = torch.where(noisy, ln_noisy, ln_clean).exp()
    sz2 = torch.where(noisy, torch.full_like(sigma, sigma_zeta**2), torch.zeros_like(sigma))
    x_t = x + append_dims((sigma**2 - sz2).clamp_min(0).sqrt(), x.ndim) * randn(x.shape, generator, x.device)
    b = append_dims(sz2 / sigma**2, x.ndim)
    prediction = (1 - b) * denoiser(x_t, sigma) + b * x_t
    return edm_weight(sigma, cfg.sigma_data) * (prediction - x).square().flatten(1).mean(1)


@dataclasses.dataclass(frozen=True)
class Baseline:
    what: str
    data: Callable[[NoisySplit], tuple[torch.Tensor, dict[str, torch.Tensor]]]  # training images and extras
    ambient: bool = False  # trained with ambient_loss (the noisy flags ride in the extras)


def _ambient_data(split: NoisySplit):
    flags = torch.cat([torch.zeros(len(split.clean)), torch.ones(len(split.noisy))])
    return torch.cat([split.clean.images, split.noisy]), {"noisy": flags}


def _oracle_data(split: NoisySplit):
    if split.originals is None:
        raise UserError("the oracle baseline trains on the clean originals of the noisy images, and a noisy set "
                        "you bring (sfbd.noisy_data) has none")
    return torch.cat([split.clean.images, split.originals.images]), {}


BASELINES = {
    "clean-only": Baseline("the clean part alone", lambda s: (s.clean.images, {})),
    "noisy-only": Baseline("noisy images as if clean", lambda s: (s.noisy, {})),
    "ambient": Baseline("noisy images only at sigma >= sigma_zeta, clean at all levels", _ambient_data,
                        ambient=True),
    "oracle": Baseline("all images clean", _oracle_data),
}
