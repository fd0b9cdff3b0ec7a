"""SFBD against its baselines at equal training compute, at several clean fractions.

For each clean fraction: one SFBD run (FID after every round) and the four baselines
(clean-only, noisy-only, ambient, oracle), each trained for the SFBD run's total steps.
All FIDs use the same N and seeds (stated in the table). Runs are resumable: rerunning the
script continues unfinished runs and reuses finished ones.

    python benchmarks/sfbd.py --config configs/sfbd/mnist-full.toml --fractions 0.04 0.10
    python benchmarks/sfbd.py --config configs/sfbd/mnist-cpu.toml --fractions 0.04 --name sfbd-quick
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import command_line, save_results  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.jobs.sfbd import SFBDJobConfig, load_split, run_sfbd  # noqa: E402
from attndiff.jobs.sfbd_baselines import run_baseline  # noqa: E402
from attndiff.jobs.train import load_data  # noqa: E402
from attndiff.metrics.fid import load_samples  # noqa: E402
from attndiff.metrics.memorization import copy_rate  # noqa: E402
from attndiff.report.figures import plt, save_figure  # noqa: E402
from attndiff.run import Run  # noqa: E402
from attndiff.sfbd.baselines import BASELINES  # noqa: E402

KINDS = tuple(BASELINES)


def run_seconds(records: list[dict]) -> float:
    """Wall time of a run from its first to its last metrics record (so a reused run keeps its time)."""
    times = [r["time"] for r in records if r.get("time") is not None]
    return round(max(times) - min(times), 1)


def phase_seconds(records: list[dict]) -> dict[str, float]:
    """Wall time per phase from metrics.jsonl timestamps (first to last record of each tag)."""
    spans: dict[str, list[float]] = {}
    for r in records:
        if r.get("time") is not None:
            spans.setdefault(r["tag"], []).append(r["time"])
    return {tag: round(max(t) - min(t), 1) for tag, t in spans.items() if len(t) > 1}


def copies(run_dir: Path, tag: str, clean, n: int) -> float:
    """Near-copy rate (nearest-neighbour ratio test) of a run's last FID samples against the clean part."""
    return copy_rate(load_samples(run_dir / "samples" / f"{tag}-samples.npz")[:n], clean)["copy_rate"]


def figure(runs: list[dict], path: Path) -> None:
    """One panel per clean fraction: SFBD's FID against training steps, the baselines at the end."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False, sharey=True)
    for ax, run in zip(axes[0], runs):
        ax.plot(run["sfbd_steps_per_round"], run["sfbd_fid_per_round"], "o-", color="k", label="SFBD (round 0..K)")
        for i, (kind, b) in enumerate(run["baselines"].items()):  # side by side, so none hides another
            ax.plot(run["total_steps"] * (1 + 0.015 * i), b["fid"], "s", ms=7, label=kind)
        ax.set_yscale("log")
        ax.set_title(f"{run['dataset']}, {run['clean_fraction']:.0%} clean")
        ax.set_xlabel("training steps")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(f"FID (N = {runs[0]['fid_n']}, log scale)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/sfbd/mnist-cpu.toml")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.04, 0.10])
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--name", default=None, help="results name (default: sfbd-<config name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()

    rows, copy_rows, results = [], [], {"config": args.config, "overrides": args.overrides, "runs": []}
    oracle = None  # trained once: it sees every training image clean, whatever the clean fraction
    base_cfg = config.load(SFBDJobConfig, args.config, args.overrides)
    test = load_data(dataclasses.replace(base_cfg.data, split=base_cfg.fid.split, limit=base_cfg.fid.n)).images
    for fraction in args.fractions:
        cfg = config.load(SFBDJobConfig, args.config, args.overrides + [f"sfbd.clean_fraction={fraction}"])
        cfg = config.from_dict(SFBDJobConfig, {**config.to_dict(cfg), "name": f"{cfg.name}-c{fraction:g}"})
        clean = load_split(cfg).clean.images
        sfbd_dir = run_sfbd(cfg)
        records = Run(sfbd_dir).metrics()
        rounds = [r for r in records if r.get("tag") == "sfbd-eval"]
        backward = [r for r in records if r.get("tag") == "backward"]
        entry = {"clean_fraction": fraction, "sigma_zeta": cfg.sfbd.sigma_zeta, "dataset": cfg.data.name,
                 "fid_n": cfg.fid.n, "total_steps": cfg.total_steps,
                 "sfbd_fid_per_round": [r.get("fid") for r in rounds],
                 "sfbd_steps_per_round": [r["images_seen"] // cfg.train.batch_size for r in rounds],
                 "denoised_psnr_per_round": [r.get("denoised_psnr") for r in rounds],
                 "denoised_fid_per_round": [r.get("denoised_fid") for r in rounds],
                 "backward_images_per_s": [r["images_per_s"] for r in backward],
                 "phase_seconds": phase_seconds(records), "sfbd_wall_s": run_seconds(records),
                 "test_images_copy_rate": copy_rate(test, clean)["copy_rate"],
                 "sfbd_copy_rate": copies(sfbd_dir, "sfbd", clean, cfg.fid.n), "baselines": {}}
        for kind in args.kinds:
            out = oracle if kind == "oracle" and oracle else run_baseline(cfg, kind)
            if kind == "oracle":  # every image clean: the same run serves every fraction
                oracle = out
            records = Run(out).metrics()
            fid = [r for r in records if r.get("tag") == f"{kind}-eval"][-1]["fid"]
            entry["baselines"][kind] = {"fid": fid, "wall_s": run_seconds(records), "run": out.name,
                                        "copy_rate": copies(out, kind, clean, cfg.fid.n)}
        results["runs"].append(entry)
        fids = " → ".join(f"{f:.1f}" for f in entry["sfbd_fid_per_round"] if f is not None)
        base = " | ".join(f"{entry['baselines'][k]['fid']:.1f}" if k in entry["baselines"] else "-" for k in KINDS)
        rows.append(f"| {cfg.data.name} | {fraction:.0%} | {fids} | {base} | "
                    f"{', '.join(f'{v:.0f}' for v in entry['backward_images_per_s'])} |")
        rates = [entry["test_images_copy_rate"], entry["sfbd_copy_rate"],
                 *(b["copy_rate"] for b in entry["baselines"].values())]
        copy_rows.append(f"| {cfg.data.name} | {fraction:.0%} ({len(clean)} images) | "
                         + " | ".join(f"{r:.1%}" for r in rates) + " |")

    first = results["runs"][0]
    command = command_line()
    table = f"""`{command}`:
sigma_zeta {first['sigma_zeta']}, FID against {first['fid_n']} test images (N = {first['fid_n']} samples,
same seeds everywhere), every model trained for {first['total_steps']} steps. The oracle (every training image
clean) does not depend on the clean fraction and is trained once. SFBD's FID is listed after
pretraining (round 0 = clean-only pretraining) and after each round.

| data | clean | SFBD FID by round | clean-only | noisy-only | ambient | oracle | backward img/s |
|---|---:|---|---:|---:|---:|---:|---|
""" + "\n".join(rows) + f"""

Near-copies of a clean training image among the same {first['fid_n']} samples (nearest-neighbour
ratio test, `attndiff.metrics.memorization`), and among {first['fid_n']} held-out test images for scale:

| data | clean part | test images | SFBD | {' | '.join(first['baselines'])} |
|---|---|---:|---:|{'---:|' * len(first['baselines'])}
""" + "\n".join(copy_rows)
    name = args.name or f"sfbd-{Path(args.config).stem}"
    figure(results["runs"], Path(__file__).parent / "results" / f"{name}.png")
    save_results(name, results, table + f"\n\n![SFBD FID by round against the baselines](results/{name}.png)")


if __name__ == "__main__":
    main()
