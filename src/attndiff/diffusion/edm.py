"""EDM preconditioning and loss, as in Table 1 of Karras et al. (2022), "Elucidating the design space".

A *denoiser* is any callable D(x, sigma, **cond) -> x0_hat. `Precond` turns a raw network
F(x_in, c_noise, class_labels) into one; samplers, SFBD and frame averaging only ever see D.

A *loss* is any callable loss(denoiser, batch, *, generator) -> (B,) per-sample values, where
`batch` is a `Batch` record: the images, their class labels if any, and named per-sample extras
(SFBD's ambient baseline passes its noisy-image flags there). The training loop reduces.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

import torch
from torch import nn

from attndiff.precision import autocast


@dataclasses.dataclass
class EDMConfig:
    sigma_data: float = 0.5  # std of the data (pixels in [-1, 1])
    p_mean: float = -1.2  # training noise levels: ln(sigma) ~ N(p_mean, p_std^2)
    p_std: float = 1.2
    sigma_min: float = 0.002  # sampling range
    sigma_max: float = 80.0
    rho: float = 7.0  # sigma grid curvature (EDM eq. 5)

    def validate(self):
        from attndiff import UserError

        if not (0 < self.sigma_min < self.sigma_max) or self.sigma_data <= 0 or self.p_std <= 0:
            raise UserError(f"edm: need 0 < sigma_min < sigma_max, sigma_data > 0, p_std > 0; got {self}")


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a (B,) tensor broadcasts over (B, C, H, W)."""
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


def preconditioning(sigma: torch.Tensor, sigma_data: float):
    """(c_skip, c_out, c_in, c_noise) of EDM Table 1."""
    s2, d2 = sigma**2, sigma_data**2
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / (s2 + d2).sqrt()
    c_in = 1 / (s2 + d2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


class Precond(nn.Module):
    """D(x, sigma) = c_skip x + c_out F(c_in x, c_noise): the EDM denoiser around a network F."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, autocast_dtype: torch.dtype | None = None):
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data
        self.autocast_dtype = autocast_dtype  # run F in bf16 when set; D is always fp32

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, class_labels=None) -> torch.Tensor:
        x = x.float()
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = preconditioning(sigma, self.sigma_data)
        with autocast(x.device.type, self.autocast_dtype):
            f = self.net(append_dims(c_in, x.ndim) * x, c_noise, class_labels)
        return append_dims(c_skip, x.ndim) * x + append_dims(c_out, x.ndim) * f.float()


def randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved to `device`."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device).to(device)


def edm_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """The loss weight lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (EDM Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_noise(x: torch.Tensor, cfg: EDMConfig, generator: torch.Generator | None = None):
    """One training draw: (sigma, x + sigma n, lambda(sigma)), ln sigma ~ N(P_mean, P_std^2)."""
    sigma = (randn(x.shape[0], generator, x.device) * cfg.p_std + cfg.p_mean).exp()
    noisy = x + randn(x.shape, generator, x.device) * append_dims(sigma, x.ndim)
    return sigma, noisy, edm_weight(sigma, cfg.sigma_data)


@dataclasses.dataclass(frozen=True)
class Batch:
    """One training minibatch: images (B, C, H, W), class labels (B,) or None, named per-sample extras."""

    x: torch.Tensor
    labels: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


class Loss(Protocol):
    def __call__(self, denoiser: Callable, batch: Batch, *, generator: torch.Generator | None) -> torch.Tensor: ...


def edm_loss(denoiser, batch: Batch, *, cfg: EDMConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample EDM loss (B,): lambda(sigma) * mean ||D(x + n, sigma) - x||^2."""
    x = batch.x
    sigma, noisy, weight = edm_noise(x, cfg, generator)
    return weight * (denoiser(noisy, sigma, batch.labels) - x).square().flatten(1).mean(1)
