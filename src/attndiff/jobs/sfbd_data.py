"""Noisy data a user brings: `attndiff sfbd noise` (the one-time noising step of the copyright
workflow: noise a set once, keep or delete the originals, train on the noisy file), `attndiff
sfbd estimate-noise` (a noisy set's noise level from the images alone) and the split of an SFBD
run on such a file (`sfbd.noisy_data` plus `sfbd.clean_data`).

A noisy file is an npz of float32 `images` in NCHW on the [-1, 1] pixel scale plus the noise,
stored unclipped and unquantised (clipping or 8-bit rounding would change the noise's
statistics), optionally with `sigma_zeta` (the noise std on the [-1, 1] scale: a run whose
config says otherwise stops), `index` (each image's identity: it seeds the image's noise in
the backward step; default 0..N-1), `labels` and `noise_seed`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from attndiff import UserError, progress
from attndiff.data import images as image_data
from attndiff.fsutil import write_npz
from attndiff.jobs.train import load_data
from attndiff.sfbd.noisy import NoisySplit, estimate_sigma, frozen_noise, given_split

# How far the estimate may miss on clean-looking data (benchmarks/noise-estimate.json: +2.6% on
# MNIST at sigma 0.59, +18% on 8x8 digits, +26% on MNIST at sigma 0.05): beyond it, a warning.
ESTIMATE_TOLERANCE = 0.3


def noise_dataset(data: str, out: str, *, sigma: float, seed: int = 0, split: str = "train", limit: int = 0) -> Path:
    """y = x + sigma * eps for every image of a dataset, eps frozen by (seed, image index); a float npz."""
    if not sigma > 0 or not np.isfinite(sigma):
        raise UserError(f"--sigma must be a finite number > 0 (the noise std on the [-1, 1] scale), got {sigma}")
    if seed < 0 or limit < 0:
        raise UserError("--seed and --limit must be >= 0")
    dataset = image_data.load(data, split)
    if 0 < limit < len(dataset):
        dataset = dataset.subset(limit, seed)
    index = torch.arange(len(dataset))
    noisy = dataset.images + sigma * frozen_noise(index, dataset.shape, seed)
    path = write_npz(Path(out).with_suffix(".npz"), images=noisy.numpy().astype(np.float32),
                     index=index.numpy(), labels=dataset.labels.numpy(), sigma_zeta=np.float64(sigma),
                     noise_seed=np.int64(seed), source=np.str_(dataset.name))
    progress.say(f"wrote {len(noisy)} images of {dataset.name} with Gaussian noise of std {sigma} "
                 f"(seed {seed}, unclipped float32) to {path}")
    return path


@dataclasses.dataclass(frozen=True)
class NoisyFile:
    images: torch.Tensor  # (N, C, H, W) float32, unclipped
    sigma_zeta: float | None  # the noise std the file records, if it records one
    index: torch.Tensor  # (N,) each image's identity


def read_noisy(path: str | Path) -> NoisyFile:
    """A noisy npz, checked: float, (N, C, H, W), finite, a valid index."""
    if str(path).startswith("folder:") or Path(path).suffix.lower() in image_data.IMAGE_SUFFIXES:
        raise UserError(f"{path}: a noisy set must be a float npz, not image files: 8-bit rounding and clipping "
                        "change the noise; see `attndiff sfbd noise`")
    path = Path(str(path).removeprefix("npz:"))
    if not path.is_file():
        raise UserError(f"noisy file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            x = z["images"] if "images" in z.files else None
            sigma = float(z["sigma_zeta"]) if "sigma_zeta" in z.files else None
            index = z["index"] if "index" in z.files else None
    except (OSError, ValueError, EOFError, KeyError, TypeError) as e:
        raise UserError(f"cannot read npz file {path}: {e}") from None
    if x is None:
        raise UserError(f"{path} has no 'images' array")
    if x.dtype == np.uint8:
        raise UserError(f"{path} holds uint8 images: a noisy set must be stored as floats, unclipped and "
                        "unquantised (8-bit rounding and clipping change the noise); see `attndiff sfbd noise`")
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating) or len(x) == 0:
        raise UserError(f"{path}: noisy images must be a non-empty float array (N, C, H, W), got {x.dtype} {x.shape}")
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise UserError(f"{path}: the noisy images contain NaN or inf")
    if index is not None and (index.shape != (len(x),) or not np.issubdtype(index.dtype, np.integer)):
        raise UserError(f"{path}: 'index' must hold one integer per image")
    index = torch.arange(len(x)) if index is None else torch.from_numpy(index.astype(np.int64))
    return NoisyFile(x, sigma, index)


def own_split(cfg) -> NoisySplit:
    """An SFBD job's data when it brings its own noisy file (sfbd.noisy_data) and clean set
    (sfbd.clean_data, read like [data]): checked against the configured sigma_zeta."""
    s = cfg.sfbd
    noisy = read_noisy(s.noisy_data)
    if noisy.sigma_zeta is not None and not np.isclose(noisy.sigma_zeta, s.sigma_zeta, rtol=1e-6):
        raise UserError(f"{s.noisy_data} records noise std {noisy.sigma_zeta:g} but sfbd.sigma_zeta is "
                        f"{s.sigma_zeta:g}: set sfbd.sigma_zeta = {noisy.sigma_zeta:g}")
    clean = load_data(dataclasses.replace(cfg.data, name=s.clean_data))
    split = given_split(clean, noisy.images, noisy.index, s.sigma_zeta)  # checked before any warning
    estimate = estimate_sigma(noisy.images)
    if abs(estimate - s.sigma_zeta) > ESTIMATE_TOLERANCE * s.sigma_zeta:
        progress.warn(f"the noise std estimated from {s.noisy_data} is {estimate:.3f}, sfbd.sigma_zeta is "
                      f"{s.sigma_zeta:g} (on the [-1, 1] scale; see `attndiff sfbd estimate-noise`)")
    return split


def estimate_noise(path: str) -> float:
    noisy = read_noisy(path)
    estimate, recorded = estimate_sigma(noisy.images), noisy.sigma_zeta
    print(f"estimated noise std {estimate:.4f} on the [-1, 1] scale ({estimate * 127.5:.1f} on 0..255)"
          + (f"; the file records {recorded:g}" if recorded is not None else "")
          + " (median absolute finest-scale diagonal Haar coefficient / 0.6745)")
    return estimate
