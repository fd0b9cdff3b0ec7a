"""Weight tying (WT): convolutions whose kernels are invariant under a group, hence equivariant.

For a group that permutes pixels about the image centre, conv(g x, W) = g conv(x, W) for every
g exactly when W(g q) = W(q) for every kernel offset q: the kernel is constant on each orbit of
the group acting on the k x k grid. `TiedKernel` stores one free value per orbit and expands
them into the full kernel, registered as a torch parametrization of the conv weight, so the
optimizer only ever sees the free values and the parameter count is the real one.

For a 3x3 kernel, C4 and D4 both leave 3 free values per channel pair (centre, edge, corner),
H and V leave 6. The other parts of the UNet are already equivariant: 1x1 convolutions,
GroupNorm, SiLU, the spatially uniform noise/label embedding, attention without positional
encoding, average-pool down and nearest up on even sizes.

The reference code's D4 kernel doubled the rotation sum before adding flips, so it was not
flip-invariant; here the orbits come from the group's own elements, and the tests check
equivariance numerically for every element.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from attndiff.symmetry.groups import Group


def kernel_orbits(group: Group, size: int) -> tuple[torch.Tensor, int]:
    """(index, n): index[i, j] in 0..n-1 names the orbit of kernel offset (i, j) under the group."""
    grid = torch.arange(size * size).reshape(size, size)
    smallest = torch.stack([g(grid) for g in group]).amin(0)  # an orbit's smallest flat index names it
    names, index = torch.unique(smallest, return_inverse=True)
    return index, len(names)


class TiedKernel(nn.Module):
    """Parametrization (out, in, n_orbits) -> (out, in, k, k) constant on the group's orbits."""

    def __init__(self, group: Group, size: int):
        super().__init__()
        index, n = kernel_orbits(group, size)
        self.size, self.n = size, n
        self.register_buffer("index", index.flatten(), persistent=False)
        self.register_buffer("orbit_size", torch.bincount(self.index, minlength=n).float(), persistent=False)

    def forward(self, free: torch.Tensor) -> torch.Tensor:
        return free[..., self.index].unflatten(-1, (self.size, self.size))

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """The orbit means: the closest tied kernel (orthogonal projection) in free coordinates."""
        sums = weight.new_zeros(*weight.shape[:-2], self.n).index_add_(-1, self.index, weight.flatten(-2))
        return sums / self.orbit_size


def tie_conv(conv: nn.Conv2d, group: Group) -> nn.Conv2d:
    """Make one convolution's kernel group-invariant, in place (1x1 kernels already are).

    The free values start at the orbit means scaled by sqrt(orbit size): a mean of m i.i.d.
    initial weights has 1/m of their variance, so the scaling keeps torch's fan-in init scale
    (and zero-initialised layers stay zero).
    """
    k = conv.kernel_size[0]
    if k == 1 or group.is_trivial:
        return conv
    if conv.kernel_size[0] != conv.kernel_size[1] or conv.stride != (1, 1) or conv.padding != (k // 2, k // 2):
        raise ValueError(f"weight tying needs square, stride-1, 'same'-padded kernels; got {conv}")
    tied = TiedKernel(group, k)
    with torch.no_grad():
        free = tied.right_inverse(conv.weight) * tied.orbit_size.sqrt()
    parametrize.register_parametrization(conv, "weight", tied, unsafe=True)
    with torch.no_grad():
        conv.parametrizations.weight.original.copy_(free)
    return conv


def tie_weights(net: nn.Module, group: Group) -> nn.Module:
    """Tie every convolution kernel of `net` to `group`, in place; returns net."""
    for module in list(net.modules()):
        if isinstance(module, nn.Conv2d):
            tie_conv(module, group)
    return net

