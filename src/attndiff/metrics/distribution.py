"""Distances between sample sets and scores against a known density: the exact testbed's metrics.

- `energy_distance`: 2 E|X - Y| - E|X - X'| - E|Y - Y'| (Szekely), 0 exactly when the
  distributions agree; computed on at most `n` points of each set.
- `sliced_wasserstein`: the sliced 2-Wasserstein distance, sqrt of the mean over random
  directions of the squared W2 between the projected sets (sorted, equal sizes). A set and its
  translate by delta are at sqrt(mean (theta . delta)^2) = |delta| / sqrt(D).
- `mixture_scores`: against the true mixture, the mean log-likelihood of the samples, the share
  of samples per component (each sample to its most probable component) and the total
  variation between those shares and the true weights.
"""

from __future__ import annotations

import torch

from attndiff.data.mixtures import GaussianMixture


def _subsample(x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    x = x.flatten(1).double()
    return x[torch.randperm(len(x), generator=generator)[:n]] if len(x) > n else x


def energy_distance(x: torch.Tensor, y: torch.Tensor, *, n: int = 2000, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    x, y = _subsample(x, n, g), _subsample(y, n, g)
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, *, projections: int = 256, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    m = min(len(x), len(y))
    x, y = _subsample(x, m, g), _subsample(y, m, g)
    theta = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = (x @ theta).sort(0).values, (y @ theta).sort(0).values  # (m, projections)
    return float((px - py).square().mean().sqrt())


def mixture_scores(samples: torch.Tensor, mix: GaussianMixture) -> dict:
    """Log-likelihood, per-component shares and their total variation from the true weights."""
    w, _, _ = mix.posterior(samples, 0.0)  # at sigma 0 the "posterior" weights are the responsibilities
    shares = torch.bincount(w.argmax(1), minlength=len(mix.weights)).double() / len(samples)
    return {"loglik": float(mix.log_prob(samples).mean()),
            "mode_tv": float(0.5 * (shares - mix.weights.double()).abs().sum()),
            "mode_shares": [round(float(s), 4) for s in shares]}
