"""`attndiff sfbd noise` and `attndiff sfbd estimate-noise`: the one-time noising step of the
copyright workflow (noise a set once, keep or delete the originals, train on the noisy file), and
an estimate of a noisy set's noise level from the images alone.

A noisy file is an npz of float32 `images` in NCHW on the [-1, 1] pixel scale plus the noise,
stored unclipped and unquantised (clipping or 8-bit rounding would change the noise's
statistics), with `labels`, `sigma_zeta` (the noise std on the [-1, 1] scale) and `noise_seed`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from attndiff import UserError, progress
from attndiff.data import images as image_data
from attndiff.fsutil import write_npz
from attndiff.sfbd.noisy import estimate_sigma, frozen_noise


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
                     labels=dataset.labels.numpy(), sigma_zeta=np.float64(sigma), noise_seed=np.int64(seed),
                     source=np.str_(dataset.name))
    progress.say(f"wrote {len(noisy)} images of {dataset.name} with Gaussian noise of std {sigma} "
                 f"(seed {seed}, unclipped float32) to {path}")
    return path


def read_noisy(path: str | Path) -> tuple[torch.Tensor, float | None]:
    """The float images of a noisy npz and the sigma_zeta it records (None when it records none)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"noisy file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            x = z["images"] if "images" in z.files else None
            sigma = float(z["sigma_zeta"]) if "sigma_zeta" in z.files else None
    except (OSError, ValueError, EOFError, KeyError) as e:
        raise UserError(f"cannot read npz file {path}: {e}") from None
    if x is None:
        raise UserError(f"{path} has no 'images' array")
    if x.dtype == np.uint8:
        raise UserError(f"{path} holds uint8 images: a noisy set must be stored as floats, unclipped and "
                        "unquantised (8-bit rounding and clipping change the noise); see `attndiff sfbd noise`")
    if x.ndim != 4:
        raise UserError(f"{path}: noisy images must be (N, C, H, W), got shape {x.shape}")
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise UserError(f"{path}: the noisy images contain NaN or inf")
    return x, sigma


def estimate_noise(path: str) -> float:
    x, recorded = read_noisy(path)
    estimate = estimate_sigma(x)
    print(f"estimated noise std {estimate:.4f} on the [-1, 1] scale ({estimate * 127.5:.1f} on 0..255)"
          + (f"; the file records {recorded:g}" if recorded is not None else "")
          + " (median absolute finest-scale diagonal Haar coefficient / 0.6745)")
    return estimate
