"""Image data in memory: the dataset record every loader returns, and the conversions between
uint8 pixels, float arrays and the [-1, 1] float tensors the models see."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from attndiff import UserError


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    name: str
    images: torch.Tensor  # (N, C, H, W) float32 in [-1, 1]
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...] = ()

    def __post_init__(self):
        if self.images.ndim != 4 or len(self.labels) != len(self.images):
            raise UserError(f"dataset {self.name}: expected (N, C, H, W) images with N labels, "
                            f"got images {tuple(self.images.shape)} and {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def select(self, index: torch.Tensor) -> ImageDataset:
        return dataclasses.replace(self, images=self.images[index], labels=self.labels[index])

    def subset(self, n: int, seed: int = 0) -> ImageDataset:
        """n images drawn without replacement, the same ones for the same seed."""
        if not 0 < n <= len(self):
            raise UserError(f"dataset {self.name} has {len(self)} images; cannot take a subset of {n}")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.select(perm[:n].sort().values)

    def split(self, fraction: float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Disjoint (first, rest) with round(fraction * N) images in the first part."""
        if not 0.0 < fraction < 1.0:
            raise UserError(f"split fraction must be in (0, 1), got {fraction}")
        n = max(1, min(len(self) - 1, round(fraction * len(self))))
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.select(perm[:n].sort().values), self.select(perm[n:].sort().values)


def to_unit_range(u8: np.ndarray) -> torch.Tensor:
    """uint8 NCHW -> float32 in [-1, 1]."""
    return torch.tensor(u8, dtype=torch.float32).div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float in [-1, 1] -> uint8, rounding to nearest (inverse of `to_unit_range`)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def images_from_array(a: np.ndarray, where: str) -> torch.Tensor:
    """uint8 (0..255) or float ([-1, 1]) arrays in NHWC, NCHW or NHW -> float NCHW in [-1, 1]."""
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise UserError(f"{where}: images must be (N, H, W[, C]) or (N, C, H, W), got shape {a.shape}")
    if a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        a = a.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if a.shape[1] not in (1, 3):
        raise UserError(f"{where}: images must have 1 or 3 channels, got shape {a.shape}")
    if a.size == 0:
        raise UserError(f"{where}: empty dataset (shape {a.shape})")
    if a.dtype == np.uint8:
        return to_unit_range(np.ascontiguousarray(a))
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if not torch.isfinite(x).all() or x.min() < -1.001 or x.max() > 1.001:
        raise UserError(f"{where}: float images must be finite and in [-1, 1] (or give uint8 0..255)")
    return x.clamp_(-1, 1)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [-1, 1] images: area averaging down (exact 2x2 means for 64 -> 32), bilinear up."""
    mode = "area" if size < x.shape[-1] else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=(size, size), mode=mode, **kwargs).clamp_(-1, 1)
