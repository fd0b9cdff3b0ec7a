"""Frame averaging (FA), the equivariance regulariser (Reg) and group data augmentation.

All three work with any denoiser D(x, sigma, class_labels) -> x0_hat, a network or a closed form.

    FA:       D_G(x) = (1/|G|) sum_g g^-1 D(g x)     exact for any D, |G| times the compute
    Reg:      EDM loss + w * mean (D(x_t) - g^-1 D_ema(g x_t))^2 for one random g per batch
    augment:  EDM loss on x transformed by a random element per sample (the usual baseline)
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from attndiff.diffusion.edm import Batch, EDMConfig, edm_loss, edm_noise
from attndiff.symmetry.groups import Group


class FrameAverage(nn.Module):
    """The group average of a denoiser, computed in one batched call over the |G| transformed copies."""

    def __init__(self, denoiser, group: Group):
        super().__init__()
        self.denoiser, self.group = denoiser, group

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, class_labels=None) -> torch.Tensor:
        n, b = len(self.group), x.shape[0]
        if n == 1:
            return self.denoiser(x, sigma, class_labels)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(b).repeat(n)
        labels = class_labels.repeat(n) if class_labels is not None else None
        out = self.denoiser(self.group.orbit(x), sigma, labels).unflatten(0, (n, b))
        return sum(g.inverse()(out[j]) for j, g in enumerate(self.group)) / n


def frame_average(denoiser, group: Group) -> FrameAverage:
    """An exactly G-equivariant denoiser from any denoiser."""
    return FrameAverage(denoiser, group)


def equivariance_penalty(denoiser, target, group: Group, x_t: torch.Tensor, sigma: torch.Tensor,
                         class_labels=None, *, denoised: torch.Tensor | None = None,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample mean (D(x_t) - g^-1 T(g x_t))^2 for one random g; T is the target (EMA) denoiser, no gradient.

    Zero for every g exactly when D = T and D is equivariant at x_t.
    """
    g = group.elements[int(group.random_indices(1, generator))]
    if denoised is None:
        denoised = denoiser(x_t, sigma, class_labels)
    with torch.no_grad():
        target_out = g.inverse()(target(g(x_t), sigma, class_labels))
    return (denoised - target_out).square().flatten(1).mean(1)


def averaged_loss(denoiser, batch: Batch, *, group: Group, cfg: EDMConfig,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample EDM loss of the frame-averaged denoiser (FA is trained as it samples)."""
    return edm_loss(frame_average(denoiser, group), batch, cfg=cfg, generator=generator)


def regularised_loss(denoiser, batch: Batch, *, target, group: Group, cfg: EDMConfig, weight: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample EDM loss plus `weight` times the equivariance penalty at the same noisy input."""
    x, labels = batch.x, batch.labels
    sigma, x_t, lam = edm_noise(x, cfg, generator)
    denoised = denoiser(x_t, sigma, labels)
    loss = lam * (denoised - x).square().flatten(1).mean(1)
    penalty = equivariance_penalty(denoiser, target, group, x_t, sigma, labels, denoised=denoised,
                                   generator=generator)
    return loss + weight * penalty


def augmented_loss(denoiser, batch: Batch, *, group: Group, cfg: EDMConfig,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """EDM loss on each sample transformed by a random group element (data augmentation)."""
    x = group.apply_each(batch.x, group.random_indices(len(batch.x), generator))
    return edm_loss(denoiser, dataclasses.replace(batch, x=x), cfg=cfg, generator=generator)
