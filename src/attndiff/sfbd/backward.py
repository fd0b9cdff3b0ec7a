"""SFBD's backward (denoising) step: the model's own reverse process from sigma_zeta to 0.

In the variance-exploding parametrisation x_t = x_0 + t eps, a noisy observation
y = x + sigma_zeta eps *is* a draw of x_t at t = sigma_zeta, so the reverse process started
at y samples the model's posterior p(x_0 | x_sigma = y) (stochastic mode, the paper's
statement). Deterministic mode integrates the probability-flow ODE with Heun, as the
authors' released code does; it maps the noisy marginal onto the model's data marginal but
does not sample the posterior.
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from attndiff.diffusion.edm import EDMConfig
from attndiff.diffusion.sampling import PerSampleNoise, edm_sigmas, gaussian_noise, sample, truncate_sigmas


def backward_sigmas(sigma: float, steps: int, edm: EDMConfig = EDMConfig()) -> torch.Tensor:
    """The EDM rho-grid of `steps` points, truncated at sigma, with sigma itself as the first point."""
    return truncate_sigmas(edm_sigmas(steps, edm.sigma_min, edm.sigma_max, edm.rho), sigma)


@torch.no_grad()
def backward(denoiser, y: torch.Tensor, sigma: float, *, steps: int, stochastic: bool = True,
             generator: torch.Generator | None = None, seeds: Sequence[int] | None = None,
             edm: EDMConfig = EDMConfig(), batch_size: int = 256, device="cpu",
             progress: bool | str = False) -> torch.Tensor:
    """Denoise noisy images y (at noise level sigma) with the reverse process of `denoiser`.

    steps: points of the full EDM grid before truncation (the authors used 40).
    seeds: one seed per image (e.g. its dataset index), so that each image's result does not
    depend on the batch or rank it is processed in; otherwise `generator` drives the noise.
    """
    if seeds is not None and len(seeds) != len(y):
        raise ValueError(f"need one seed per image: {len(seeds)} seeds for {len(y)} images")
    sigmas = backward_sigmas(sigma, steps, edm).to(device)
    solver = "sde" if stochastic else "heun"
    shared_noise = gaussian_noise(generator)
    out = []
    starts = range(0, len(y), batch_size)
    desc = progress if isinstance(progress, str) else "backward step"
    for start in tqdm(starts, desc=desc, leave=False, disable=not progress, unit="batch"):
        batch = y[start:start + batch_size].to(device)
        noise = PerSampleNoise(seeds[start:start + batch_size]) if seeds is not None else shared_noise
        out.append(sample(denoiser, batch, sigmas, solver=solver, noise=noise).cpu())
    return torch.cat(out) if out else y.new_empty(y.shape)
