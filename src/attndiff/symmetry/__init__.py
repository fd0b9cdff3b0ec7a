"""Structure-preserving diffusion (arXiv 2402.19369): denoisers equivariant under a group of
90-degree rotations and flips, so the learned distribution is exactly invariant. Three ways to
get one (weight tying, frame averaging, regularisation) on the shared EDM core, plus
orientation-free image denoising. Importing the package registers its model recipes."""

from attndiff.symmetry import recipes  # noqa: F401  (registers augment, wt, regular, fa, reg)
from attndiff.symmetry.averaging import frame_average
from attndiff.symmetry.groups import get

__all__ = ["frame_average", "get"]
