"""The one bf16/fp32 switch.

Training and sampling run the network under bf16 autocast where the hardware is fast at it
(`precision = "auto"`: AMX or AVX512-BF16 CPUs, bf16-capable GPUs), or always ("bf16"), or
never ("fp32"). Metrics (FID features, equivariance errors, posterior checks) run in fp32
unless a caller asks otherwise.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Literal

import torch

Precision = Literal["auto", "bf16", "fp32"]
CHOICES = ("auto", "bf16", "fp32")


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16 present (Linux /proc/cpuinfo); elsewhere bf16 on CPU is slow."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """bf16 autocast dtype for 'bf16' (or 'auto' where bf16 is fast); None means fp32."""
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    fast = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_fast_bf16()
    return torch.bfloat16 if fast else None


def autocast(device_type: str, dtype: torch.dtype | None):
    """torch.autocast for a low-precision dtype; a no-op for None (fp32)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)
