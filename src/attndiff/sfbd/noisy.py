"""SFBD's data: a small clean part and a large noisy part whose noise is drawn once and frozen.

Each noisy image is y_i = x_i + sigma_zeta * eps_i with eps_i from the stream (seed, "noise", i), i the
image's index in the source dataset: loading twice gives the same y, whatever the order or
subset. The clean originals of the noisy images are kept apart (`originals`) for
evaluation only; the training code is handed `clean` and `noisy` alone. A noisy set a user
brings has no originals (`given_split`).
"""

from __future__ import annotations

import dataclasses

import torch

from attndiff import UserError, seeding
from attndiff.data.images import ImageDataset


def frozen_noise(index: torch.Tensor, shape, seed: int) -> torch.Tensor:
    """Standard normal noise of `shape` for each dataset index, the same on every call."""
    if seed < 0:
        raise UserError(f"noise seed must be >= 0, got {seed}")
    draws = [torch.randn(shape, generator=seeding.generator(seed, "noise", int(i))) for i in index]
    return torch.stack(draws) if draws else torch.empty(0, *shape)


@dataclasses.dataclass(frozen=True)
class NoisySplit:
    clean: ImageDataset  # the small clean part (clean_fraction of the data)
    noisy: torch.Tensor  # (N_noisy, C, H, W): y = x + sigma_zeta * eps, frozen
    noisy_index: torch.Tensor  # (N_noisy,) indices of the noisy images in the source dataset
    originals: ImageDataset | None  # clean versions of the noisy images: evaluation only (None: unknown)
    sigma_zeta: float


def make_noisy_split(data: ImageDataset, *, clean_fraction: float = 0.04, sigma_zeta: float = 0.59,
                     seed: int = 0) -> NoisySplit:
    """Split `data` into disjoint clean and noisy parts (seeded) and add frozen noise to the noisy part."""
    if not 0.0 < clean_fraction <= 1.0:
        raise UserError(f"clean_fraction must be in (0, 1], got {clean_fraction}")
    if sigma_zeta <= 0:
        raise UserError(f"sigma_zeta must be > 0, got {sigma_zeta}")
    n = len(data)
    n_clean = max(1, round(clean_fraction * n))
    if n_clean >= n:
        raise UserError(f"clean_fraction {clean_fraction} leaves no noisy images among the {n} of {data.name}: "
                        "SFBD needs some (use a smaller fraction, or the clean-only baseline)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    clean_index, noisy_index = perm[:n_clean].sort().values, perm[n_clean:].sort().values
    originals = data.select(noisy_index)
    noisy = originals.images + sigma_zeta * frozen_noise(noisy_index, data.shape, seed)
    return NoisySplit(data.select(clean_index), noisy, noisy_index, originals, sigma_zeta)


def given_split(clean: ImageDataset, noisy: torch.Tensor, index: torch.Tensor, sigma_zeta: float) -> NoisySplit:
    """A clean set and a noisy set brought as they are: no split is made and no originals exist.
    `index` identifies each noisy image (it seeds the image's backward-step noise)."""
    if tuple(noisy.shape[1:]) != tuple(clean.shape):
        raise UserError(f"the noisy images are {tuple(noisy.shape[1:])} but the clean ones {tuple(clean.shape)}: "
                        "SFBD needs both sets at one shape (resize with data.resolution or beforehand)")
    if len(index) != len(noisy) or len(set(index.tolist())) != len(index):
        raise UserError(f"the noisy set's index must name each of its {len(noisy)} images once")
    if sigma_zeta <= 0:
        raise UserError(f"sigma_zeta must be > 0, got {sigma_zeta}")
    return NoisySplit(clean, noisy, index, None, sigma_zeta)


def estimate_sigma(images: torch.Tensor) -> float:
    """The std of white Gaussian noise in images (N, C, H, W), from the images alone.

    Donoho and Johnstone's estimator (1994): the median absolute value of the finest-scale
    diagonal Haar wavelet coefficients, divided by 0.6745 (the median of |N(0, 1)|). The
    orthonormal coefficient (a - b - c + d) / 2 of each 2x2 block has std sigma under white noise
    and is near zero on smooth image content, and the median ignores the edges that are not.
    """
    if images.ndim != 4 or images.shape[-1] < 2 or images.shape[-2] < 2:
        raise UserError(f"noise estimation needs images (N, C, H, W) of at least 2x2, got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise UserError("noise estimation: the images contain NaN or inf")
    h, w = images.shape[-2] // 2 * 2, images.shape[-1] // 2 * 2
    x = images[..., :h, :w].double()
    diagonal = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    return float(diagonal.abs().median() / 0.6745)
