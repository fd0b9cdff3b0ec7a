"""Distortion of restored images against their originals."""

from __future__ import annotations

import torch


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for [-1, 1] images (peak-to-peak 2); x is clipped to the pixel range first."""
    mse = (x.clamp(-1, 1) - ref).square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))
