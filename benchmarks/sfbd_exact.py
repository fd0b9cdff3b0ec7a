"""SFBD where the truth is known: the exact testbed (configs/sfbd/gmm-2d.toml and friends).

A Gaussian mixture with a known density, n_clean clean points and 10,000 noisy ones at
sigma_zeta (a multiple of the data's per-coordinate scale), a small MLP denoiser on the shared
EDM core. SFBD and the four baselines run through the same jobs as the images (`sfbd run`,
`sfbd baseline`), every model for the same training steps; samples are scored against fresh
draws of the truth: energy distance, sliced W2, mean log-likelihood under the true density,
mode coverage (total variation between the share of samples per component and the true
weights), and the near-copy rate against the clean points (nearest-neighbour ratio test).
SFBD and clean-only run for every training seed; the other baselines for the first seed.
Every run is a resumable run folder under runs/bench-exact/, so an interrupted sweep continues.

    python benchmarks/sfbd_exact.py                       # gmm-2d, the default sweep
    python benchmarks/sfbd_exact.py --config configs/sfbd/gmm-32d.toml --clean 30 300 --seeds 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import HERE, save_results  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.data.mixtures import mixture  # noqa: E402
from attndiff.diffusion.sampling import evaluations  # noqa: E402
from attndiff.jobs.exact import scatter, truth  # noqa: E402
from attndiff.jobs.sfbd import SFBDJobConfig, load_split, run_sfbd  # noqa: E402
from attndiff.jobs.sfbd_baselines import run_baseline, run_folder  # noqa: E402
from attndiff.metrics.distribution import mixture_scores  # noqa: E402
from attndiff.metrics.memorization import copy_rate  # noqa: E402
from attndiff.report.figures import plt, save_figure  # noqa: E402
from attndiff.run import Run  # noqa: E402
from attndiff.sfbd.baselines import BASELINES  # noqa: E402

NOISY = 10000
METRICS = ("energy", "sliced_w2", "loglik", "mode_tv")


def job(args, n_clean: int, sigma: float, seed: int) -> SFBDJobConfig:
    name = f"{Path(args.config).stem}-n{n_clean}-z{sigma:g}-seed{seed}"
    overrides = [f"data.limit={n_clean + NOISY}", f"sfbd.clean_fraction={n_clean / (n_clean + NOISY)}",
                 f"sfbd.sigma_zeta={sigma}", f"train.seed={seed}", f"name={name}", f'out="runs/bench-exact/{name}"',
                 *args.overrides]
    return config.load(SFBDJobConfig, args.config, overrides)


def scores(run_dir: Path, tag: str, clean: torch.Tensor) -> dict:
    """The last evaluation of a run, plus the near-copy rate of its samples against the clean points."""
    record = Run(run_dir).last(f"{tag}-eval")
    samples = torch.from_numpy(np.load(run_dir / "samples" / f"{tag}-samples.npz")["samples"])
    return {**{k: record[k] for k in METRICS}, "copy_rate": copy_rate(samples, clean)["copy_rate"]}


def cell(args, n_clean: int, sigma: float, seed: int) -> dict:
    cfg = job(args, n_clean, sigma, seed)
    clean = load_split(cfg).clean.images
    t = time.perf_counter()
    sfbd_dir = run_sfbd(cfg)
    rounds = Run(sfbd_dir).find("sfbd-eval")
    out = {"n_clean": n_clean, "sigma_zeta": sigma, "seed": seed, "total_steps": cfg.total_steps,
           "sfbd": {**scores(sfbd_dir, "sfbd", clean), "by_round": [{k: r[k] for k in (*METRICS, "round")}
                                                                     for r in rounds],
                    "denoised_energy_by_round": [r.get("denoised_energy") for r in rounds]}}
    # in low dimensions true samples also fall close to a clean point: their rate is the scale
    out["truth_copy_rate"] = copy_rate(truth(cfg.data.name)[:2000], clean)["copy_rate"]
    kinds = BASELINES if seed == args.first_seed else ("clean-only",)
    for kind in kinds:
        out[kind] = scores(run_baseline(cfg, kind), kind, clean)
    out["wall_s"] = round(time.perf_counter() - t, 1)
    return out


def summary(cells: list[dict], methods) -> dict:
    """Mean and std over seeds of each metric, per (n_clean, sigma_zeta, method)."""
    groups: dict[tuple, list] = {}
    for c in cells:
        for m in methods:
            if m in c:
                groups.setdefault((c["n_clean"], c["sigma_zeta"], m), []).append(c[m])
    out = {}
    for (n, sigma, m), rows in groups.items():
        stats = {}
        for k in (*METRICS, "copy_rate"):
            v = [r[k] for r in rows]
            stats[k] = {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else None, "n": len(v)}
        out[f"n{n}-z{sigma:g}-{m}"] = {"n_clean": n, "sigma_zeta": sigma, "method": m, **stats}
    return out


def figures(args, cells: list[dict], table: dict, methods) -> None:
    sigmas = sorted({c["sigma_zeta"] for c in cells})
    fig, axes = plt.subplots(1, len(sigmas), figsize=(4.2 * len(sigmas), 3.6), squeeze=False, sharey=True)
    for ax, sigma in zip(axes[0], sigmas):
        for m in methods:
            pts = sorted((v["n_clean"], v["energy"]["mean"], v["energy"]["std"] or 0) for v in table.values()
                         if v["method"] == m and v["sigma_zeta"] == sigma)
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts], marker="o", capsize=3,
                            label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("clean points")
        ax.set_title(f"sigma_zeta {sigma:g}")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("energy distance to the truth")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, HERE / "results" / f"{args.name}.png")
    first = [c for c in cells if c["seed"] == args.first_seed]
    pick = min(first, key=lambda c: (abs(c["sigma_zeta"] - sigmas[len(sigmas) // 2]), c["n_clean"]))
    cfg = job(args, pick["n_clean"], pick["sigma_zeta"], pick["seed"])
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(3.2 * (len(methods) + 1), 3.4))
    for ax, m in zip(axes, methods):
        run_dir = cfg.run_dir if m == "sfbd" else run_folder(cfg, m)
        x = torch.from_numpy(np.load(run_dir / "samples" / f"{m}-samples.npz")["samples"])
        scatter(x, cfg.data.name, title=m, ax=ax)
    scatter(truth(cfg.data.name), cfg.data.name, title="truth (fresh draws)", ax=axes[-1])
    fig.suptitle(f"{pick['n_clean']} clean points, sigma_zeta {pick['sigma_zeta']:g}, seed {pick['seed']}")
    fig.tight_layout()
    save_figure(fig, HERE / "results" / f"{args.name}-samples.png")
    rounds_figure(args, cells, sigmas)


def rounds_figure(args, cells: list[dict], sigmas: list[float]) -> None:
    """SFBD's energy distance after each round (0: its pretrained model), mean ± std over seeds, one
    line per clean count; clean-only's final distance as a dotted line of the same colour."""
    fig, axes = plt.subplots(1, len(sigmas), figsize=(4.2 * len(sigmas), 3.6), squeeze=False, sharey=True)
    for ax, sigma in zip(axes[0], sigmas):
        for i, n in enumerate(sorted({c["n_clean"] for c in cells})):
            group = [c for c in cells if c["n_clean"] == n and c["sigma_zeta"] == sigma]
            if not group:
                continue
            curves = np.array([[r["energy"] for r in c["sfbd"]["by_round"]] for c in group])
            ax.errorbar(range(curves.shape[1]), curves.mean(0), curves.std(0, ddof=1) if len(group) > 1 else None,
                        marker="o", capsize=3, color=f"C{i}", label=f"{n} clean")
            ax.axhline(statistics.fmean(c["clean-only"]["energy"] for c in group), color=f"C{i}", ls=":", lw=1)
            ax.set_xticks(range(curves.shape[1]))
        ax.set_yscale("log")
        ax.set_xlabel("SFBD round (0: pretrained on the clean points)")
        ax.set_title(f"sigma_zeta {sigma:g}")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("energy distance to the truth")
    axes[0, 0].legend(fontsize=7, title="dotted: clean-only", title_fontsize=7)
    fig.tight_layout()
    save_figure(fig, HERE / "results" / f"{args.name}-rounds.png")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/sfbd/gmm-2d.toml")
    p.add_argument("--clean", type=int, nargs="+", default=[10, 30, 100, 300])
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.6], help="sigma_zeta as multiples of the data scale")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--name", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    args.name = args.name or f"sfbd-exact-{Path(args.config).stem}"
    torch.set_num_threads(2)
    base = config.load(SFBDJobConfig, args.config, args.overrides)
    scale = float(truth(base.data.name).flatten(1).std(0).mean())
    cells = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for rel in args.sigmas:
            for n_clean in args.clean:
                cells.append(cell(args, n_clean, round(rel * scale, 3), seed))
    methods = ("sfbd", *BASELINES)
    table = summary(cells, methods)
    figures(args, cells, table, methods)
    lines = ["| clean points | sigma_zeta | " + " | ".join(methods) + " | truth |",
             "|---:|---:|" + "---:|" * (len(methods) + 1)]
    for n in args.clean:
        for sigma in sorted({c["sigma_zeta"] for c in cells}):
            row = []
            for m in methods:
                v = table.get(f"n{n}-z{sigma:g}-{m}")
                e = v["energy"] if v else None
                row.append("-" if e is None else f"{e['mean']:.4f}" + (f" ± {e['std']:.4f}" if e["std"] else "")
                           + f" (copies {v['copy_rate']['mean']:.0%})")
            truth_rate = statistics.fmean(c["truth_copy_rate"] for c in cells
                                          if c["n_clean"] == n and c["sigma_zeta"] == sigma)
            lines.append(f"| {n} | {sigma:g} | " + " | ".join(row) + f" | (copies {truth_rate:.0%}) |")
    truth_loglik = float(mixture_scores(truth(base.data.name), mixture(base.data.name))["loglik"])
    lines += ["", "Log-likelihood under the true density (higher is better; fresh truth draws score "
              f"{truth_loglik:.3f}) and mode "
              "coverage (total variation from the true weights), mean over seeds:", "",
              "| clean points | sigma_zeta | " + " | ".join(methods) + " |", "|---:|---:|" + "---:|" * len(methods)]
    for n in args.clean:
        for sigma in sorted({c["sigma_zeta"] for c in cells}):
            row = [f"{v['loglik']['mean']:.2f} / {v['mode_tv']['mean']:.3f}" if v else "-"
                   for v in (table.get(f"n{n}-z{sigma:g}-{m}") for m in methods)]
            lines.append(f"| {n} | {sigma:g} | " + " | ".join(row) + " |")
    cfg = job(args, args.clean[0], cells[0]["sigma_zeta"], args.first_seed)
    train_evals = cfg.total_steps * cfg.train.batch_size
    backward_evals = cfg.sfbd.rounds * NOISY * evaluations(cfg.sfbd.backward_steps, stochastic=cfg.sfbd.stochastic,
                                                           scheme=cfg.sfbd.backward_scheme)
    text = (f"Equal compute, both ways: every model trains for {cfg.total_steps} steps of {cfg.train.batch_size} "
            f"points ({train_evals:,} network evaluations with gradients); SFBD's backward steps add "
            f"{backward_evals:,} evaluations without gradients ({cfg.sfbd.rounds} x {NOISY:,} points x "
            f"{evaluations(cfg.sfbd.backward_steps, stochastic=True, scheme=cfg.sfbd.backward_scheme)}), which the "
            f"baselines do not get.\n\n"
            f"Energy distance to the truth (mean ± std over {args.seeds} training seeds for SFBD and clean-only, one "
            f"seed for the others; lower is better) and the near-copy rate of the samples against the clean points (in "
            f"low dimensions fresh draws of the truth also land near clean points: their rate, last column, is the "
            f"scale, so a rate at or below it is no sign of copying); "
            f"{NOISY:,} noisy points, data scale {scale:.3f}, every model trained for {cells[0]['total_steps']} steps. "
            f"Figures: `results/{args.name}.png` (distance against clean points), "
            f"`results/{args.name}-rounds.png` (SFBD's distance by round), `results/{args.name}-samples.png`.\n\n"
            + "\n".join(lines))
    results = {"config": args.config, "data_scale": scale, "truth_loglik": truth_loglik, "cells": cells,
               "summary": table}
    save_results(args.name, results, text)


if __name__ == "__main__":
    main()
