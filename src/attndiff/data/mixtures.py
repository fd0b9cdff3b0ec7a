"""Gaussian mixtures: data whose density, denoiser and posterior are known in closed form.

A mixture of K isotropic Gaussians N(mu_k, s_k^2 I) in D dimensions with weights pi_k. Under the
diffusion's noise x_t = x_0 + sigma eps everything stays a mixture of Gaussians:

    p(x_t)          = sum_k pi_k N(x_t; mu_k, (s_k^2 + sigma^2) I)
    p(x_0 | x_t)    = sum_k w_k(x_t) N(m_k, v_k I),  w_k proportional to pi_k N(x_t; mu_k, (s_k^2 + sigma^2) I),
                      m_k = (s_k^2 x_t + sigma^2 mu_k) / (s_k^2 + sigma^2),  v_k = s_k^2 sigma^2 / (s_k^2 + sigma^2)
    D(x_t, sigma)   = E[x_0 | x_t] = sum_k w_k m_k

so samplers, SFBD's backward step and whole training runs can be checked against the truth.
Tensors of any shape (B, ...) are flattened to (B, D).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from attndiff import UserError, seeding
from attndiff.data.arrays import ImageDataset


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    means: torch.Tensor  # (K, D)
    stds: torch.Tensor  # (K,)
    weights: torch.Tensor  # (K,), summing to 1

    def __post_init__(self):
        k = len(self.means)
        if self.means.ndim != 2 or self.stds.shape != (k,) or self.weights.shape != (k,):
            raise UserError(f"a mixture needs means (K, D), stds (K,) and weights (K,); got {tuple(self.means.shape)}, "
                            f"{tuple(self.stds.shape)}, {tuple(self.weights.shape)}")
        if (self.stds <= 0).any() or (self.weights < 0).any() or abs(float(self.weights.sum()) - 1) > 1e-6:
            raise UserError("mixture stds must be > 0 and weights >= 0 summing to 1")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n draws (n, D) and the component of each (n,)."""
        component = torch.multinomial(self.weights.double(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means.double()[component] + self.stds.double()[component, None] * eps).float(), component

    def _log_terms(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """log(pi_k N(x; mu_k, (s_k^2 + sigma^2) I)) per row and component (B, K), and s_k^2 + sigma^2 (B, K)."""
        flat = x.reshape(len(x), -1).double()
        sigma2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1) ** 2  # (B or 1, 1)
        var = self.stds.double() ** 2 + sigma2  # (B or 1, K)
        sq = torch.cdist(flat, self.means.double()) ** 2  # (B, K)
        log = self.weights.double().log() - 0.5 * sq / var - 0.5 * self.dim * (2 * math.pi * var).log()
        return log, var.expand_as(log)

    def log_prob(self, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """log p(x_t) at noise level sigma (sigma 0: the data density), per row (B,)."""
        return self._log_terms(x, sigma)[0].logsumexp(1)

    def posterior(self, y: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """p(x_0 | x_sigma = y): weights (B, K), means (B, K, D), variances (B, K) of its components."""
        log, var = self._log_terms(y, sigma)
        w = log.softmax(1)
        s2 = self.stds.double() ** 2
        flat = y.reshape(len(y), -1).double()
        sigma2 = var - s2  # (B, K)
        means = (s2[:, None] * flat[:, None, :] + sigma2[..., None] * self.means.double()) / var[..., None]
        return w, means, s2 * sigma2 / var

    def denoiser(self, x: torch.Tensor, sigma, class_labels=None) -> torch.Tensor:
        """The exact denoiser E[x_0 | x_sigma = x], in x's shape and dtype."""
        w, means, _ = self.posterior(x, sigma)
        return (w[..., None] * means).sum(1).reshape(x.shape).to(x.dtype)

    def posterior_cdf(self, y: torch.Tensor, sigma: float, values: torch.Tensor) -> torch.Tensor:
        """One-dimensional mixtures only: P(x_0 <= values | x_sigma = y) for one y, values (N,)."""
        if self.dim != 1:
            raise ValueError("posterior_cdf is defined for one-dimensional mixtures")
        w, means, var = self.posterior(y.reshape(1, 1), sigma)
        z = (values.double()[:, None] - means[0, :, 0]) / var[0].sqrt()
        return (w[0] * torch.special.ndtr(z)).sum(1)


def two_modes(separation: float = 1.2, std: float = 0.15, weight: float = 0.5) -> GaussianMixture:
    """A one-dimensional pixel prior with modes at +-separation/2 (a near-binary pixel)."""
    return GaussianMixture(torch.tensor([[-separation / 2], [separation / 2]]), torch.tensor([std, std]),
                           torch.tensor([weight, 1 - weight]))


def _ring_2d() -> GaussianMixture:
    """Eight modes on a circle of radius 0.8 with unequal weights (1 to 8): mode coverage shows."""
    angles = torch.arange(8) * (2 * math.pi / 8)
    means = 0.8 * torch.stack([angles.cos(), angles.sin()], 1)
    weights = torch.arange(1, 9, dtype=torch.float32)
    return GaussianMixture(means, torch.full((8,), 0.08), weights / weights.sum())


def _random_32d() -> GaussianMixture:
    """Eight modes at seeded random points of norm 2 in 32 dimensions (per-coordinate scale about 0.36)."""
    g = torch.Generator().manual_seed(32)
    means = torch.randn(8, 32, generator=g)
    means = 2 * means / means.norm(dim=1, keepdim=True)
    weights = torch.arange(1, 9, dtype=torch.float32)
    return GaussianMixture(means, torch.full((8,), 0.15), weights / weights.sum())


def _curve_16d() -> GaussianMixture:
    """A curved one-dimensional manifold in 16 dimensions: the closed curve (cos t, sin t, 0.5 sin 3t)
    mapped by a seeded random orthonormal 16x3 matrix and thickened by 128 equal Gaussians of std
    0.04 centred along it (neighbouring centres about 1.5 std apart, so the density is a smooth tube
    around the curve, known exactly as the mixture it is drawn from)."""
    g = torch.Generator().manual_seed(16)
    t = torch.arange(128, dtype=torch.float64) * (2 * math.pi / 128)
    curve = torch.stack([t.cos(), t.sin(), 0.5 * (3 * t).sin()], 1)  # (128, 3)
    frame, _ = torch.linalg.qr(torch.randn(16, 3, generator=g, dtype=torch.float64))
    return GaussianMixture((curve @ frame.T).float(), torch.full((128,), 0.04), torch.full((128,), 1 / 128))


MIXTURES = {"gmm-2d": _ring_2d, "gmm-32d": _random_32d, "curve-16d": _curve_16d}
SPLIT_SIZES = {"train": 20000, "test": 10000}


def mixture(name: str) -> GaussianMixture:
    if name not in MIXTURES:
        raise UserError(f"unknown mixture {name!r} (known: {', '.join(MIXTURES)})")
    return MIXTURES[name]()


def load(name: str, split: str = "train") -> ImageDataset:
    """A mixture dataset: seeded draws stored as vectors (N, D, 1, 1), labelled by their component."""
    if split not in SPLIT_SIZES:
        raise UserError(f"mixture dataset {name} has splits {', '.join(SPLIT_SIZES)}, not {split!r}")
    mix = mixture(name)
    x, component = mix.sample(SPLIT_SIZES[split], seeding.generator(0, name, split))
    return ImageDataset(name, x[:, :, None, None], component, tuple(f"mode{k}" for k in range(len(mix.weights))))
