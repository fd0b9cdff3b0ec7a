"""Attention dynamics against theory, accuracy on real text, and the paper's claims with verdicts.

1. The SEN relation under gradient descent: for FC, TC and TL on the synthetic task (--seeds
   seeds, each its own task data and initialisation), the largest deviation of the topic words'
   measured paths from the relation, at learning rates that shrink while lr x epochs stays
   fixed (gradient descent approaching gradient flow), and the drift of the non-topic words
   (the theory assumes they stay at zero) that sets its floor.
2. Real text (rt-polarity and IMDB): test accuracy of each head against a bag-of-words logistic
   regression on the same split, and the purity of the top-scoring word early and late in
   training (frequent words first, discriminative ones later?).
3. The ablations config: topic words' score and norm with keys or embeddings frozen.
(Does attention on the topic word go to 1? The long runs: benchmarks/attention_limit.py.)

    python benchmarks/attention.py
    python benchmarks/attention.py --text-configs --ablations-config ''   # the sweep only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import save_results  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.attention.dynamics import (  # noqa: E402
    AttnTrainConfig,
    History,
    sen_deviation,
    top_word_purity,
    train_attention,
)
from attndiff.attention.model import AttentionClassifier, ModelConfig  # noqa: E402
from attndiff.attention.task import TaskConfig, load  # noqa: E402
from attndiff.jobs.attention import AttentionJobConfig, run_attention  # noqa: E402
from attndiff.run import Run  # noqa: E402


def lr_sweep(heads: list[str], lrs: list[float], time_budget: float, seeds: int) -> list[dict]:
    rows = []
    for seed in range(seeds):
        corpus = load(TaskConfig(seed=seed))  # the paper's synthetic task, its data drawn from the seed
        ids = corpus.topic_ids.numpy()
        for head in heads:
            for lr in lrs:
                epochs = round(time_budget / lr)
                model = AttentionClassifier(ModelConfig(head=head, seed=seed), len(corpus.words), len(corpus.classes))
                t = time.perf_counter()
                train_cfg = AttnTrainConfig(epochs=epochs, lr=lr, snapshot_every=max(1, epochs // 500))
                h = train_attention(model, corpus, train_cfg, progress=f"seed {seed} {head} lr {lr}")
                seconds = time.perf_counter() - t
                dev = sen_deviation(h.scores[:, ids].astype(np.float64), h.norms[:, ids].astype(np.float64),
                                    TaskConfig().m, float(h.q_norm[0]))
                others = np.setdiff1d(np.arange(2, h.scores.shape[1]), ids)  # every real non-topic word
                rows.append({"head": head, "lr": lr, "seed": seed, "epochs": epochs,
                             "sen_deviation_max": float(dev.max()),
                             "nontopic_abs_score": float(np.abs(h.scores[-1, others]).mean()),
                             "nontopic_norm_ratio": float(h.norms[-1, others].mean() / h.norms[-1, ids].mean()),
                             "sen_deviation_median": float(np.median(dev)),
                             "final_score": float(h.scores[-1, ids].mean()), "attention": float(h.attention[-1]),
                             "test_acc": float(h.test_acc[-1]), "seconds": seconds,
                             "ms_per_epoch": 1000 * seconds / epochs})
                print(rows[-1])
    return rows


def text_accuracy(config_path: str) -> dict:
    """Accuracies, speed and the purity of the top-scoring word early and late in training."""
    cfg = config.load(AttentionJobConfig, config_path)
    run_dir = run_attention(cfg)
    records = Run(run_dir).metrics()
    finals = [r for r in records if r.get("tag", "").endswith("-final")]
    baseline = [r["test_acc"] for r in records if r.get("tag") == "bow-baseline"]
    corpus, purity = load(cfg.task), {}
    for variant in cfg.variants:
        with np.load(run_dir / "dynamics" / f"{variant}.npz", allow_pickle=False) as z:
            history = History(**{k: z[k] for k in z.files})
        values, counts = top_word_purity(history, corpus)
        tenth = max(1, len(values) // 10)
        purity[variant] = {"early": float(values[1:tenth + 1].mean()), "late": float(values[-tenth:].mean()),
                           "early_count": float(np.median(counts[1:tenth + 1])),
                           "late_count": float(np.median(counts[-tenth:]))}
    return {"config": config_path, "test_acc": {r["variant"]: r["test_acc"] for r in finals},
            "epochs_per_s": {r["variant"]: r.get("epochs_per_s") for r in finals},
            "sen_deviation_median": {r["variant"]: r.get("sen_deviation_median") for r in finals},
            "purity": purity, "bow_baseline": baseline[-1] if baseline else None}


def ablations(config_path: str) -> list[dict]:
    """The ablation variants' final topic-word score, embedding norm, attention and loss."""
    records = Run(run_attention(config.load(AttentionJobConfig, config_path))).metrics()
    keys = ("variant", "loss", "score", "norm", "attention", "test_acc")
    return [{k: r[k] for k in keys} for r in records if r.get("tag", "").endswith("-final")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heads", nargs="+", default=["fc", "tc", "tl"])
    p.add_argument("--lrs", type=float, nargs="+", default=[0.4, 0.2, 0.1, 0.05])
    p.add_argument("--time", type=float, default=500.0, help="lr x epochs, fixed across learning rates (default 500)")
    p.add_argument("--text-configs", nargs="*", default=["configs/attention/rt-polarity.toml",
                                                         "configs/attention/imdb.toml"])
    p.add_argument("--seeds", type=int, default=3, help="seeds of the sweep (task data and initialisation)")
    p.add_argument("--ablations-config", default="configs/attention/ablations.toml", help="'' to skip")
    p.add_argument("--name", default="attention")
    args = p.parse_args()
    results = {"time": args.time, "seeds": args.seeds, "sweep": lr_sweep(args.heads, args.lrs, args.time, args.seeds),
               "texts": [text_accuracy(c) for c in args.text_configs]}
    if args.ablations_config:
        results["ablations"] = ablations(args.ablations_config)
    save_results(args.name, results, table(results, args.name))


def table(results: dict, name: str = "attention") -> str:
    seeds = results.get("seeds", 1)
    plural = "s" if seeds > 1 else ""
    lines = [f"Synthetic task (paper sizes), lr x epochs = {results['time']:g}, mean ± std over {seeds} seed{plural} "
             "(each its own task data and initialisation; fp32): largest relative deviation of the 8 topic words' "
             "(score, ||q|| ||v||) paths from the SEN relation over training, and the drift of the other words the "
             "theory assumes stay at zero (mean |score| at the end; their mean embedding norm over the topic words'). "
             "Wall time and ms per epoch: the median over seeds, one run at a time on the machine named in the JSON.",
             "",
             "| head | lr | epochs | max deviation | median deviation | non-topic abs score | non-topic / topic norm "
             "| topic score | attention on topic word | test acc | wall time | ms / epoch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    cells = {}
    for r in results["sweep"]:
        cells.setdefault((r["head"], r["lr"]), []).append(r)
    for (head, lr), rows in cells.items():
        def cell(key, spec):
            values = [r[key] for r in rows]
            mean = f"{statistics.fmean(values):{spec}}"
            return mean + (f" ± {statistics.stdev(values):{spec}}" if len(values) > 1 else "")
        lines.append(f"| {head.upper()} | {lr:g} | {rows[0]['epochs']:,} | {cell('sen_deviation_max', '.2e')} | "
                     f"{cell('sen_deviation_median', '.2e')} | {cell('nontopic_abs_score', '.1e')} | "
                     f"{cell('nontopic_norm_ratio', '.1e')} | {cell('final_score', '.2f')} | "
                     f"{cell('attention', '.3f')} | {cell('test_acc', '.3f')} | "
                     f"{statistics.median(r['seconds'] for r in rows):.0f} s | "
                     f"{statistics.median(r['ms_per_epoch'] for r in rows):.1f} |")
    for text in results.get("texts", []):
        accs = ", ".join(f"{k} {v:.3f}" for k, v in text["test_acc"].items())
        speed = ", ".join(f"{k} {v:.0f}" for k, v in text["epochs_per_s"].items() if v)
        bow = f"{text['bow_baseline']:.3f}" if text["bow_baseline"] is not None else "-"
        lines += ["", f"{text['config']} (seeded 80/10/10 split): test accuracy {accs}; bag-of-words logistic "
                  f"regression {bow}; full-batch epochs per second {speed}. The top-scoring word over training "
                  "(purity |p_pos - p_neg| of the sentences it is in, mean over the first and the last tenth of "
                  "the snapshots; its median training count):", "",
                  "| variant | purity, early | purity, late | count, early | count, late | median SEN deviation |",
                  "|---|---:|---:|---:|---:|---:|"]
        for variant, p in text["purity"].items():
            dev = next((v for k, v in text["sen_deviation_median"].items() if k.lower().endswith(variant)), None)
            lines.append(f"| {variant} | {p['early']:.2f} | {p['late']:.2f} | {p['early_count']:.0f} | "
                         f"{p['late_count']:.0f} | {f'{dev:.1%}' if dev is not None else '-'} |")
    if results.get("ablations"):
        lines += ["", "Ablations (configs/attention/ablations.toml; topic words' final mean score and embedding "
                  "norm):", "", "| variant | loss | topic score | topic norm | attention | test acc |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['variant']} | {r['loss']:.4f} | {r['score']:.2f} | {r['norm']:.3f} | {r['attention']:.3f} | "
                  f"{r['test_acc']:.3f} |" for r in results["ablations"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
