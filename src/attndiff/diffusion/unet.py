"""A DDPM++-style UNet (Song et al. 2021, as configured in EDM) sized from plain config values.

Residual blocks with GroupNorm and SiLU, a Fourier noise-level embedding added in every
block, optional self-attention at chosen levels and optional class conditioning.
Resampling is average-pool down and nearest-neighbour up, so that on even sizes it
commutes with 90-degree rotations and flips (the symmetry work relies on this).

The layers come from a `Layers` factory: the plain one builds scalar feature maps; the
symmetry package passes one whose convolutions act on regular group feature fields, and the
same widths then count fields (|G| maps each) instead of channels.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from attndiff import UserError


@dataclasses.dataclass
class UNetConfig:
    channels: int = 32  # width at the input resolution
    channel_mult: tuple[int, ...] = (1, 2, 2)  # width multiplier per level; each level halves H, W
    num_blocks: int = 2  # residual blocks per level
    attn_levels: tuple[int, ...] = (2,)  # levels with self-attention (0 = input resolution)
    dropout: float = 0.0
    num_classes: int = 0  # > 0 enables class conditioning

    def validate(self):
        if self.channels < 4 or self.channels % 2:  # the Fourier noise embedding pairs cos and sin
            raise UserError(f"unet.channels must be even and >= 4, got {self.channels}")
        if not self.channel_mult or self.num_blocks < 1 or not 0 <= self.dropout < 1:
            raise UserError("unet: need a non-empty channel_mult, num_blocks >= 1, 0 <= dropout < 1")
        bad = [lv for lv in self.attn_levels if not 0 <= lv < len(self.channel_mult)]
        if bad:
            raise UserError(f"unet.attn_levels {bad} out of range for {len(self.channel_mult)} levels")


def group_norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(norm_groups(ch), ch, eps=1e-6)


def norm_groups(ch: int) -> int:
    """Up to 32 groups of at least 4 channels: the most groups that divide ch (a 48-channel
    UNet concatenates 144-channel skips: 24 groups)."""
    return next(g for g in range(min(32, ch // 4), 0, -1) if ch % g == 0)


class Layers:
    """The layers of the plain UNet; `size` is the number of channels per unit of width."""

    size = 1

    def conv(self, cin: int, cout: int, k: int = 3) -> nn.Module:
        return nn.Conv2d(cin, cout, k, padding=k // 2)

    def norm(self, ch: int) -> nn.Module:
        return group_norm(ch)

    def embed(self, dim: int, ch: int) -> nn.Module:
        """(B, dim) noise embedding -> (B, ch * size) per-channel shift."""
        return nn.Linear(dim, ch)

    def lift(self, image_channels: int, ch: int) -> nn.Module:
        """The first convolution, from the image."""
        return self.conv(image_channels, ch)

    def project(self, ch: int, image_channels: int) -> nn.Module:
        """The last convolution, back to an image."""
        return self.conv(ch, image_channels)


PLAIN = Layers()


def zero_init(module: nn.Module) -> nn.Module:
    """Zero the last layer of a residual branch so every block starts as the identity (EDM init_zero)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class FourierEmbedding(nn.Module):
    """Random Fourier features of the scalar c_noise (NCSN++/EDM); frequencies are a fixed buffer."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        angles = c.float()[:, None] * (2 * math.pi * self.freqs)  # (B, dim/2)
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, layers: Layers = PLAIN):
        super().__init__()
        self.norm0 = layers.norm(cin)
        self.conv0 = layers.conv(cin, cout)
        self.emb = layers.embed(emb_dim, cout)
        self.norm1 = layers.norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = zero_init(layers.conv(cout, cout))
        self.skip = layers.conv(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = h + self.emb(emb)[:, :, None, None]  # the noise level enters every block
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        return (h + self.skip(x)) * math.sqrt(0.5)  # DDPM++ skip scale keeps variance constant


class SelfAttention(nn.Module):
    """Multi-head self-attention over pixels, without positional encoding (so it commutes with pixel
    permutations). Each head holds whole units of width (whole fields), so a permutation within
    fields permutes queries and keys alike and leaves their products unchanged."""

    def __init__(self, ch: int, head_dim: int = 64, layers: Layers = PLAIN):
        super().__init__()
        self.heads = math.gcd(ch, max(1, ch * layers.size // head_dim))
        self.norm = layers.norm(ch)
        self.qkv = layers.conv(ch, 3 * ch, 1)
        self.proj = zero_init(layers.conv(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, c/heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, c/heads)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(out)) * math.sqrt(0.5)


class Block(nn.Module):
    """A residual block, optionally followed by self-attention."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, attention: bool, layers: Layers = PLAIN):
        super().__init__()
        self.res = ResBlock(cin, cout, emb_dim, dropout, layers)
        self.attn = SelfAttention(cout, layers=layers) if attention else None

    def forward(self, x, emb):
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class Upsample(nn.Module):
    def __init__(self, ch: int, layers: Layers = PLAIN):
        super().__init__()
        self.conv = layers.conv(ch, ch)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """F(x_in, c_noise, class_labels) -> (B, C, H, W); wrap in `edm.Precond` to get a denoiser."""

    def __init__(self, cfg: UNetConfig, image_channels: int, resolution: int, layers: Layers = PLAIN):
        super().__init__()
        levels = len(cfg.channel_mult)
        if resolution % 2 ** (levels - 1):
            raise UserError(f"unet: {resolution}px images cannot be halved {levels - 1} times; "
                            f"use fewer levels in unet.channel_mult (e.g. 3 levels for 28px)")
        self.cfg, self.image_channels, self.resolution = cfg, image_channels, resolution
        ch = cfg.channels
        emb_dim = 4 * ch
        self.noise_embed = nn.Sequential(FourierEmbedding(ch), nn.Linear(ch, emb_dim), nn.SiLU(),
                                         nn.Linear(emb_dim, emb_dim))
        self.label_embed = nn.Embedding(cfg.num_classes, emb_dim) if cfg.num_classes else None
        self.conv_in = layers.lift(image_channels, ch)
        block = functools.partial(Block, emb_dim=emb_dim, dropout=cfg.dropout, layers=layers)

        widths = [ch * m for m in cfg.channel_mult]
        self.down = nn.ModuleList()
        skips = [ch]
        cur = ch
        for level, width in enumerate(widths):
            for _ in range(cfg.num_blocks):
                self.down.append(block(cur, width, attention=level in cfg.attn_levels))
                cur = width
                skips.append(cur)
            if level < levels - 1:
                self.down.append(nn.AvgPool2d(2))
                skips.append(cur)
        self.mid = nn.ModuleList([block(cur, cur, attention=True), block(cur, cur, attention=False)])
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            for _ in range(cfg.num_blocks + 1):
                self.up.append(block(cur + skips.pop(), widths[level], attention=level in cfg.attn_levels))
                cur = widths[level]
            if level > 0:
                self.up.append(Upsample(cur, layers))
        self.norm_out = layers.norm(cur)
        self.conv_out = zero_init(layers.project(cur, image_channels))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None):
        emb = self.noise_embed(c_noise)
        if self.label_embed is not None:
            if class_labels is None:
                raise ValueError("this UNet is class-conditional: pass class_labels")
            emb = emb + self.label_embed(class_labels)
        emb = F.silu(emb)
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Block) else layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], 1), emb) if isinstance(layer, Block) else layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
