"""The symmetry groups of square images: 90-degree rotations and flips, and their subgroups.

Every element of the dihedral group D4 is r^k f^m: first mirror left-right m times (m in {0, 1}),
then rotate counter-clockwise by k * 90 degrees. The elements act on the last two axes of any
tensor, so the same element transforms an image batch (B, C, H, W) and a conv kernel
(out, in, k, k) alike. All of them permute pixels, so they are orthogonal maps.

    trivial  {e}
    C4       the four rotations
    D4       rotations and flips (8 elements)
    H        {e, left-right mirror}
    V        {e, up-down mirror}   (the up-down mirror is r^2 f)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from attndiff import UserError


@dataclasses.dataclass(frozen=True)
class Element:
    """r^k f^m: mirror left-right if m, then rotate by k quarter turns counter-clockwise."""

    k: int = 0
    m: int = 0

    def __post_init__(self):
        object.__setattr__(self, "k", self.k % 4)
        object.__setattr__(self, "m", self.m % 2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.m:
            x = x.flip(-1)
        return torch.rot90(x, self.k, dims=(-2, -1)) if self.k else x

    def __matmul__(self, other: Element) -> Element:
        """Composition: (a @ b)(x) = a(b(x)). Uses f r^k = r^-k f."""
        return Element(self.k + (-other.k if self.m else other.k), self.m + other.m)

    def inverse(self) -> Element:
        return self if self.m else Element(-self.k)  # every reflection is its own inverse

    @property
    def name(self) -> str:
        if not self.m:
            return f"rot{90 * self.k}"
        return {0: "flip-lr", 2: "flip-ud", 1: "flip-diag", 3: "flip-antidiag"}[self.k]


@dataclasses.dataclass(frozen=True)
class Group:
    name: str
    elements: tuple[Element, ...]

    def __len__(self) -> int:
        return len(self.elements)

    def __iter__(self):
        return iter(self.elements)

    @property
    def is_trivial(self) -> bool:
        return len(self.elements) == 1

    def orbit(self, x: torch.Tensor) -> torch.Tensor:
        """All |G| transforms of a batch, element-major: (|G| * B, ...)."""
        return torch.cat([g(x) for g in self.elements])

    def random_indices(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(len(self.elements), (n,), generator=generator)

    def apply_each(self, x: torch.Tensor, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Transform sample i of the batch by element indices[i]."""
        indices = torch.as_tensor(indices)
        out = x.clone()
        for j, g in enumerate(self.elements):
            rows = (indices == j).nonzero().flatten()
            if len(rows):
                out[rows] = g(x[rows])
        return out


_E = Element()
_GROUPS = {
    "trivial": (_E,),
    "C4": tuple(Element(k) for k in range(4)),
    "D4": tuple(Element(k, m) for m in range(2) for k in range(4)),
    "H": (_E, Element(0, 1)),
    "V": (_E, Element(2, 1)),
}
NAMES = tuple(_GROUPS)


def get(name: str) -> Group:
    """The group called `name`: trivial, C4, D4, H or V (case-insensitive; 'none' = trivial)."""
    key = {"none": "trivial"}.get(name.lower(), name.upper() if name.lower() != "trivial" else "trivial")
    if key not in _GROUPS:
        raise UserError(f"unknown symmetry group {name!r} (known: {', '.join(NAMES)})")
    return Group(key, _GROUPS[key])
