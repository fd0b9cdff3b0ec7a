"""The summary and report sections of `attndiff audio run`."""

from __future__ import annotations

import numpy as np

from attndiff.report import figures
from attndiff.report.figures import plt
from attndiff.report.html import fig_tag, table

RESULT = "result"  # the `kind` of a finished (seed, fold) pair's record


def summarize(results: list[dict]) -> dict:
    out = {}
    for m in ("accuracy", "precision", "recall", "f1", "seconds"):
        v = np.array([r[m] for r in results])
        out[m] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
    out["head"], out["total"] = results[0]["head"], results[0]["total"]
    return out


def audio_sections(records: list[dict], summary: dict, classes) -> list[str]:
    results = [r for r in records if r.get("kind") == RESULT]
    rows = [{"metric": m, "value": f"{summary[m]['mean']:.3f} ± {summary[m]['std']:.3f}"}
            for m in ("accuracy", "precision", "recall", "f1")]
    parts = ["<h2>Scores (mean ± std over seeds and folds)</h2>", table(rows, [("metric", "", "s"),
                                                                           ("value", "", "s")]),
             f"<p>{summary['accuracy']['n']} runs; parameters: head {summary['head']:,}, whole model "
             f"{summary['total']:,}; {summary['seconds']['mean']:.0f} s per run.</p>",
             table(results, [("tag", "run", "s"), ("accuracy", "accuracy", ".3f"), ("f1", "macro F1", ".3f"),
                             ("seconds", "s", ".0f")])]
    fig = figures.curves([r for r in records if "test_acc" in r and r.get("kind") != RESULT], "test_acc",
                         title="test accuracy per epoch (one line per seed and fold)")
    if fig is not None:
        parts.append(fig_tag(fig, "learning curves"))
    confusion = np.sum([r["confusion"] for r in results], 0)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(confusion / confusion.sum(1, keepdims=True).clip(min=1), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion (rows normalised, all runs)")
    parts += ["<h2>Confusion matrix</h2>", fig_tag(fig, "confusion matrix")]
    selections = [r["selection"] for r in results if r.get("selection")]
    if selections:
        n = len(next(row for s in selections for row in s if row is not None))
        grid = np.full((len(selections), len(classes), n), np.nan)
        for i, s in enumerate(selections):
            for c, row in enumerate(s):
                if row is not None:
                    grid[i, c] = row
        grid = np.nanmean(grid, 0)
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel("classifier")
        ax.set_title("mean selector weight per true class")
        fig.colorbar(im)
        parts += ["<h2>Which classifier is selected for what</h2>", fig_tag(fig, "selector weights")]
    return parts
