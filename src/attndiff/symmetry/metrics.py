"""How symmetric a model and its samples are.

- `invariance_score`: the mean FID between the samples and their transforms g(samples), over
  g != e (the paper's measure). An exactly invariant distribution scores 0 only as N grows: at
  finite N the floor is the same score of real images drawn from an invariant set, which the
  benchmark reports beside it.
- `orientation_shares`: for a training set in a single orientation, which group element each
  sample is in (the nearest training image over all transformed copies of the set). An
  invariant model gives every element the share 1/|G|.
- `equivariance_error`: relative RMS of D(g x) - g D(x) over g and noise levels on given images:
  ~1e-7 for exactly equivariant models in fp32, larger for Reg (approximate by construction).
"""

from __future__ import annotations

import torch

from attndiff.metrics.fid import features, fid_from_features
from attndiff.symmetry.groups import Group


def invariance_score(samples: torch.Tensor, group: Group, *, progress: bool = True) -> float:
    """Mean over g != e of FID(samples, g(samples)); 0 for the trivial group."""
    if group.is_trivial:
        return 0.0
    feats = [features(g(samples), progress=f"invariance features {g.name}" if progress else False) for g in group]
    return sum(fid_from_features(feats[0], f) for f in feats[1:]) / (len(feats) - 1)


@torch.no_grad()
def orientation_shares(samples: torch.Tensor, reference: torch.Tensor, group: Group) -> dict[str, float]:
    """Share of samples whose nearest neighbour among all g(reference) has element g."""
    dists = []
    for g in group:  # ||s - g(r)|| = ||g^-1(s) - r||: transform the samples, not the reference
        d = torch.cdist(g.inverse()(samples).flatten(1).float(), reference.flatten(1).float())
        dists.append(d.amin(1))
    nearest = torch.stack(dists, 1).argmin(1)
    counts = torch.bincount(nearest, minlength=len(group)).float() / len(samples)
    return {g.name: float(c) for g, c in zip(group, counts)}


@torch.no_grad()
def equivariance_error(denoiser, x: torch.Tensor, group: Group, sigmas=(0.2, 1.0, 5.0), class_labels=None) -> float:
    """Max over noise levels and g of RMS(D(g x_t) - g D(x_t)) / RMS(D(x_t)), x_t = x + sigma n (seeded)."""
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for sigma in sigmas:
        x_t = x + sigma * torch.randn(x.shape, generator=gen).to(x.device)
        out = denoiser(x_t, sigma, class_labels)
        scale = out.square().mean().sqrt()
        for g in group:
            err = (denoiser(g(x_t), sigma, class_labels) - g(out)).square().mean().sqrt() / scale
            worst = max(worst, float(err))
    return worst
