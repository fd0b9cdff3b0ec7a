"""Regular group convolutions (G-CNN, Cohen and Welling 2016): exact equivariance with oriented filters.

A regular feature field has one map per group element. Stored as (B, C * |G|, H, W), channel
c * |G| + i is field c seen at orientation g_i, and the group acts by moving every map and
permuting the orientations:

    (g f)_h = g(f_{g^-1 h})

Three layers keep this structure, each with one free kernel per field pair and orientation:

    lifting     image -> fields        out_h = conv(x, h W)
    group conv  fields -> fields       out_h = sum_u conv(f_u, h W[h^-1 u])
    projection  fields -> image        the mean over orientations of a group conv's output

(h W is the kernel moved by h.) Every kernel may be oriented, unlike weight tying's invariant
ones, and one forward pass is exact, unlike frame averaging's |G|. The rest of the UNet keeps
the structure once its other layers work per field: GroupNorm over whole fields with one
scale and shift per field, the noise embedding added per field, SiLU, attention whose heads
hold whole fields, average pooling and nearest upsampling on even sizes. `RegularLayers`
supplies these to the shared UNet, whose widths then count fields: C fields cost |G| times a
plain UNet's parameters and |G|^2 times its convolution FLOPs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attndiff.diffusion.unet import Layers, norm_groups
from attndiff.symmetry.groups import Group


def relative_index(group: Group) -> torch.Tensor:
    """index[i, j]: the position in the group of g_i^-1 g_j."""
    elements = list(group)
    return torch.tensor([[elements.index(a.inverse() @ b) for b in elements] for a in elements])


class RegularConv(nn.Module):
    """A convolution from `cin` regular fields (or `cin` image channels when `lifting`) to `cout` regular fields."""

    def __init__(self, group: Group, cin: int, cout: int, k: int = 3, lifting: bool = False):
        super().__init__()
        self.group, self.k, self.cout = group, k, cout
        n_in = 1 if lifting else len(group)
        self.weight = nn.Parameter(torch.empty(cout, cin, n_in, k, k))
        self.bias = nn.Parameter(torch.empty(cout))
        bound = 1 / math.sqrt(cin * n_in * k * k)  # torch's Conv2d init for the full fan-in
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        index = torch.zeros(len(group), 1, dtype=torch.long) if lifting else relative_index(group)
        self.register_buffer("index", index, persistent=False)
        self._cached: tuple | None = None  # (weights' identity, full weight, full bias) when no graph is built

    def full_weight(self) -> torch.Tensor:
        """The (cout |G|, cin n_in, k, k) kernel of an ordinary convolution: block (h, u) is h W[h^-1 u]."""
        blocks = [g(self.weight[:, :, self.index[i]]) for i, g in enumerate(self.group)]
        w = torch.stack(blocks, 1)  # (cout, |G|, cin, n_in, k, k)
        return w.reshape(self.cout * len(self.group), -1, self.k, self.k)

    def full_bias(self) -> torch.Tensor:
        """One bias per field, repeated over its orientations."""
        return self.bias.repeat_interleave(len(self.group))

    def full(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The full kernel and bias. Without autograd (sampling) they are built once per weight update:
        a tensor's version counter moves with every in-place change (optimizer and EMA steps,
        load_state_dict), and its storage with every move or cast."""
        if torch.is_grad_enabled():
            return self.full_weight(), self.full_bias()
        identity = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in (self.weight, self.bias))
        if self._cached is None or self._cached[0] != identity:
            self._cached = (identity, self.full_weight(), self.full_bias())
        return self._cached[1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.full()
        return F.conv2d(x, weight, bias, padding=self.k // 2)


class Projection(nn.Module):
    """Fields -> image: a group convolution to `cout` fields, averaged over orientations."""

    def __init__(self, group: Group, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.conv = RegularConv(group, cin, cout, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out.unflatten(1, (self.conv.cout, len(self.conv.group))).mean(2)


class FieldNorm(nn.Module):
    """GroupNorm whose groups hold whole fields, with one scale and shift per field."""

    def __init__(self, fields: int, size: int, eps: float = 1e-6):
        super().__init__()
        self.groups, self.size, self.eps = norm_groups(fields), size, eps
        self.weight = nn.Parameter(torch.ones(fields))
        self.bias = nn.Parameter(torch.zeros(fields))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.groups, self.weight.repeat_interleave(self.size),
                            self.bias.repeat_interleave(self.size), self.eps)


class FieldLinear(nn.Linear):
    """A linear map to one value per field, repeated over the field's orientations."""

    def __init__(self, dim: int, fields: int, size: int):
        super().__init__(dim, fields)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).repeat_interleave(self.size, dim=1)


class RegularLayers(Layers):
    """The shared UNet's layers on regular feature fields of `group`."""

    def __init__(self, group: Group):
        self.group, self.size = group, len(group)

    def conv(self, cin: int, cout: int, k: int = 3) -> nn.Module:
        return RegularConv(self.group, cin, cout, k)

    def norm(self, ch: int) -> nn.Module:
        return FieldNorm(ch, self.size)

    def embed(self, dim: int, ch: int) -> nn.Module:
        return FieldLinear(dim, ch, self.size)

    def lift(self, image_channels: int, ch: int) -> nn.Module:
        return RegularConv(self.group, image_channels, ch, lifting=True)

    def project(self, ch: int, image_channels: int) -> nn.Module:
        return Projection(self.group, ch, image_channels)
