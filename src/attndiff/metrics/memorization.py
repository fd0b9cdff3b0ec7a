"""Does a model copy its training images? The nearest-neighbour ratio test.

A sample counts as a near-copy of the training set when its L2 distance to the nearest
training image is below `ratio` (1/3 by default) times its distance to the second nearest:
it sits on one training image rather than between several (the criterion used in memorisation
studies of diffusion models, e.g. Yoon et al. 2023). Held-out real images score (almost) zero;
a model that has memorised a small training set scores high.

FID barely penalises a model that copies a small clean set (in the SFBD benchmark the clean-only
model beats SFBD on FID while copying), and copying is the failure SFBD's noisy data is meant
to prevent, so the SFBD benchmark reports both.
"""

from __future__ import annotations

import torch


def nearest_two(x: torch.Tensor, reference: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """(N, 2): each row of x's L2 distance to its nearest and second-nearest image in `reference`."""
    if len(reference) < 2:
        raise ValueError(f"the ratio test needs at least 2 reference images, got {len(reference)}")
    ref = reference.flatten(1).float()
    rows = [torch.cdist(chunk.flatten(1).float(), ref).topk(2, dim=1, largest=False).values
            for chunk in x.split(batch_size)]
    return torch.cat(rows)


def copy_rate(samples: torch.Tensor, train: torch.Tensor, *, ratio: float = 1 / 3) -> dict[str, float]:
    """Fraction of `samples` that are near-copies of a `train` image, and the median RMS distance
    (per pixel, in the images' own units) from a sample to its nearest training image."""
    d = nearest_two(samples, train)
    pixels = samples[0].numel()
    return {"copy_rate": (d[:, 0] < ratio * d[:, 1]).float().mean().item(),
            "nn_rms": (d[:, 0].median() / pixels**0.5).item()}
