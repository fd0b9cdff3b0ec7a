"""Evaluation on data with a known density (the exact testbed's Gaussian mixtures): distances of
the samples to fresh draws of the truth, their likelihood and mode coverage, and a picture of
the samples over the true density."""

from __future__ import annotations

import torch

from attndiff import progress, seeding
from attndiff.data import mixtures
from attndiff.fsutil import write_npz
from attndiff.metrics.distribution import energy_distance, mixture_scores, sliced_wasserstein
from attndiff.report.figures import plt, save_figure

TRUTH_DRAWS = 5000


def is_exact(dataset: str) -> bool:
    return dataset in mixtures.MIXTURES


def truth(dataset: str) -> torch.Tensor:
    """Fresh draws of the true distribution, the same for every evaluation."""
    x, _ = mixtures.mixture(dataset).sample(TRUTH_DRAWS, seeding.generator(0, dataset, "truth"))
    return x


def distribution_metrics(x: torch.Tensor, dataset: str) -> dict:
    """Energy distance and sliced W2 to the truth, log-likelihood and mode coverage under it."""
    reference = truth(dataset)
    return {"energy": energy_distance(x, reference), "sliced_w2": sliced_wasserstein(x, reference),
            **mixture_scores(x.flatten(1), mixtures.mixture(dataset)), "exact_n": len(x)}


def scatter(x: torch.Tensor, dataset: str, path=None, title: str = "", ax=None) -> None:
    """The samples (first two coordinates) over the true density's contours, into `ax` or a file."""
    mix = mixtures.mixture(dataset)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
    if mix.dim == 2:
        grid = torch.linspace(-1.3, 1.3, 200)
        xx, yy = torch.meshgrid(grid, grid, indexing="xy")
        density = mix.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp().reshape(xx.shape)
        ax.contour(xx, yy, density, levels=8, colors="#888888", linewidths=0.6)
    pts = x.flatten(1)[:2000].double()
    if mix.dim > 2:  # the plane of the component means' two main directions, means drawn in grey
        centre = mix.means.double().mean(0)
        plane = torch.linalg.svd(mix.means.double() - centre, full_matrices=False)[2][:2].T  # (D, 2)
        pts = (pts - centre) @ plane
        means = (mix.means.double() - centre) @ plane
        ax.scatter(means[:, 0], means[:, 1], s=6, color="#888888")
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color="#4477aa")
    ax.set_title(title or dataset, fontsize=9)
    if mix.dim == 2:
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-1.6, 1.6)
    ax.set_aspect("equal")
    if fig is not None:
        save_figure(fig, path)


def evaluate_exact(samples: torch.Tensor, dataset: str, run, *, tag: str, step: int, extra: dict | None = None) -> dict:
    """The testbed's counterpart of the FID evaluation: metrics, float samples and a scatter plot."""
    write_npz(run.samples / f"{tag}-samples.npz", samples=samples.numpy())
    scatter(samples, dataset, run.samples / f"{tag}-{step:08d}.png", f"{tag} {step}")
    record = {"tag": f"{tag}-eval", "step": step, **(extra or {}), **distribution_metrics(samples, dataset)}
    progress.say(f"{tag} step {step}: energy distance {record['energy']:.4f}, sliced W2 {record['sliced_w2']:.4f}, "
                 f"log-likelihood {record['loglik']:.3f}, mode TV {record['mode_tv']:.3f}")
    run.log(record)
    return record
