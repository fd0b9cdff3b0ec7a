"""A small residual MLP denoiser network for vector data (D, 1, 1): the exact testbed's model.

F(x_in, c_noise) with the same interface as the UNet, so the EDM preconditioning, loss,
samplers, training loop and SFBD run on it unchanged. Sizes come from the [unet] section:
`channels` is the hidden width and `num_blocks` the number of residual blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from attndiff.diffusion.unet import FourierEmbedding, UNetConfig, zero_init


class _Block(nn.Module):
    def __init__(self, width: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.emb = nn.Linear(emb_dim, width)
        self.body = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), zero_init(nn.Linear(width, width)))
        self.inner = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.body(self.inner(nn.functional.silu(self.norm(h))) + self.emb(emb))


class MLP(nn.Module):
    """F(x_in, c_noise, class_labels) -> (B, D, 1, 1) for vectors stored as (B, D, 1, 1)."""

    def __init__(self, cfg: UNetConfig, dim: int):
        super().__init__()
        width, emb_dim = cfg.channels * 4, cfg.channels * 2
        self.cfg, self.dim = cfg, dim
        self.noise_embedding = nn.Sequential(FourierEmbedding(emb_dim), nn.Linear(emb_dim, emb_dim), nn.SiLU())
        self.label_embedding = nn.Embedding(cfg.num_classes, emb_dim) if cfg.num_classes else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_Block(width, emb_dim, cfg.dropout) for _ in range(cfg.num_blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), zero_init(nn.Linear(width, dim)))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels=None) -> torch.Tensor:
        emb = self.noise_embedding(c_noise)
        if self.label_embedding is not None and class_labels is not None:
            emb = emb + self.label_embedding(class_labels)
        h = self.inp(x.flatten(1))  # (B, D) -> (B, width)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h).reshape(x.shape)
