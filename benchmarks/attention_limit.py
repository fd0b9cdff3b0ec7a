"""Does attention on the topic word go to 1? Long runs over seeds, against the theory's reduced model.

The paper's claim: with a linear classifier (FC, TC), gradient descent converges to attending to
the discriminative (topic) words. Here the synthetic task at the paper's sizes (lr 0.1) trains
for --epochs, ten times the paper's 5,000, for every head and --seeds seeds (each seed draws its
own task data and initialisation), through `attndiff attention run` (resumable: a finished
variant is kept in runs/attention-limit/). Beside each measured curve of the mean attention on the
topic word: the theory's reduced model (`reduced_attention`), the same gradient descent from the
same initial parameters with every non-topic word held at zero, which is the SEN relation's
assumption made exact. The theory gives no closed form in time; this is the curve it predicts,
and the gap between the two is what the other words' drift does.

    python benchmarks/attention_limit.py
    python benchmarks/attention_limit.py --seeds 1 --epochs 5000      # a quick look
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import HERE, save_results, stats  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.attention.dynamics import reduced_attention  # noqa: E402
from attndiff.attention.model import AttentionClassifier, variant_model  # noqa: E402
from attndiff.attention.task import load  # noqa: E402
from attndiff.jobs.attention import AttentionJobConfig, load_variant, run_attention  # noqa: E402
from attndiff.report.figures import plt, save_figure  # noqa: E402
from attndiff.run import Run  # noqa: E402

CONFIG = "configs/attention/synthetic.toml"


def job(seed: int, epochs: int) -> AttentionJobConfig:
    return config.load(AttentionJobConfig, CONFIG, [f"task.seed={seed}", f"model.seed={seed}",
                                                     f"train.epochs={epochs}",
                                                     f"train.snapshot_every={max(1, epochs // 500)}",
                                                     f'out="runs/attention-limit/e{epochs}-s{seed}"'])


def predicted(cfg: AttentionJobConfig, variant: str) -> list[float]:
    """The reduced model's attention on the topic word, from the variant's initial parameters."""
    torch.set_num_threads(1)
    corpus, mcfg = load(cfg.task), variant_model(cfg.model, variant)
    torch.manual_seed(mcfg.seed)  # as `train_variant` builds it
    model = AttentionClassifier(mcfg, len(corpus.words), len(corpus.classes))
    return reduced_attention(model, corpus, cfg.train)[1].tolist()


def at(epochs: list[int], values: list[float], epoch: int) -> float:
    return values[int(np.searchsorted(epochs, epoch))]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=50000)
    p.add_argument("--name", default="attention-limit")
    args = p.parse_args()
    cfgs = [job(seed, args.epochs) for seed in range(args.seeds)]
    for cfg in cfgs:
        run_attention(cfg)
    pairs = [(cfg, v) for cfg in cfgs for v in cfg.variants]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        reduced = list(pool.map(predicted, *zip(*pairs)))
    runs = []
    for (cfg, variant), theory in zip(pairs, reduced):
        h = load_variant(Run(cfg.run_dir), variant)
        runs.append({"head": variant, "seed": cfg.task.seed, "epochs": h.epochs.tolist(),
                     "attention": h.attention.tolist(), "reduced": theory, "loss": h.loss.tolist()})
    results = {"config": CONFIG, "epochs": args.epochs, "seeds": args.seeds, "lr": cfgs[0].train.lr,
               "runs": runs, "summary": summary(runs, args.epochs)}
    figure(results, HERE / "results" / f"{args.name}.png")
    save_results(args.name, results, table(results, args.name))


def summary(runs: list[dict], epochs: int) -> dict:
    """Per head over seeds: attention at the paper's 5,000 epochs and at the end, measured and
    reduced; the largest gap between the two along the way; the gain per tenfold epochs over the
    last decade (a logarithmic creep or a limit?)."""
    out = {}
    for head in dict.fromkeys(r["head"] for r in runs):
        rows = [r for r in runs if r["head"] == head]
        decade = max(1, epochs // 10)
        out[head] = {
            "paper_epochs": stats([at(r["epochs"], r["attention"], min(5000, epochs)) for r in rows]),
            "final": stats([r["attention"][-1] for r in rows]),
            "reduced_final": stats([r["reduced"][-1] for r in rows]),
            "largest_gap": stats([float(np.max(np.abs(np.subtract(r["attention"], r["reduced"])))) for r in rows]),
            "gain_last_decade": stats([r["attention"][-1] - at(r["epochs"], r["attention"], decade) for r in rows]),
            "reduced_gain_last_decade": stats([r["reduced"][-1] - at(r["epochs"], r["reduced"], decade)
                                               for r in rows])}
    return out


def fmt(s: dict, digits: int = 3) -> str:
    return f"{s['mean']:.{digits}f}" + (f" ± {s['std']:.{digits}f}" if s["std"] is not None else "")


def table(results: dict, name: str) -> str:
    e, n = results["epochs"], results["seeds"]
    lines = [f"Synthetic task (paper sizes, lr {results['lr']:g}, {e:,} epochs; mean ± std over {n} seeds, each "
             "its own task data and initialisation, fp32): mean attention on the topic word over the training "
             "sentences, measured and as the theory's reduced model predicts it (the same descent from the same "
             "start with the non-topic words held at zero); the largest gap between the two along the way; the "
             f"attention gained over the last tenfold of epochs ({max(1, e // 10):,} to {e:,}).", "",
             f"| head | at {min(5000, e):,} epochs | at the end | reduced model, at the end | largest gap "
             "| gain over the last tenfold | reduced model's gain |", "|---|---:|---:|---:|---:|---:|---:|"]
    for head, s in results["summary"].items():
        lines.append(f"| {head.upper()} | {fmt(s['paper_epochs'])} | {fmt(s['final'])} | {fmt(s['reduced_final'])} | "
                     f"{fmt(s['largest_gap'])} | {fmt(s['gain_last_decade'])} | {fmt(s['reduced_gain_last_decade'])} |")
    lines += ["", f"![attention on the topic word, measured and reduced model](results/{name}.png)"]
    return "\n".join(lines)


def figure(results: dict, path: Path) -> None:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, head in enumerate(results["summary"]):
        for j, r in enumerate(r for r in results["runs"] if r["head"] == head):
            label = head.upper() if j == 0 else None
            ax.semilogx(r["epochs"][1:], r["attention"][1:], color=f"C{i}", lw=1, label=label)
            ax.semilogx(r["epochs"][1:], r["reduced"][1:], "--", color=f"C{i}", lw=1)
            bx.loglog(r["epochs"][1:], r["loss"][1:], color=f"C{i}", lw=1, label=label)
    ax.plot([], [], "--", color="grey", label="reduced model (theory)")
    ax.set_title("mean attention on the topic word (solid: measured)")
    ax.set_ylim(0, 1)
    bx.set_title("training loss")
    for a in (ax, bx):
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
