"""Attention dynamics against theory, and accuracy on real text.

1. The SEN relation under gradient descent: for FC, TC and TL on the synthetic task, the
   largest deviation of the topic words' measured paths from the relation, at learning rates
   that shrink while lr x epochs stays fixed (gradient descent approaching gradient flow).
2. Real text (rt-polarity): test accuracy of each head against a bag-of-words logistic
   regression on the same split, from `attndiff attention run --config configs/attention/rt-polarity.toml`.

    python benchmarks/attention.py                 # about 15 minutes on 2 CPU cores
    python benchmarks/attention.py --skip-text
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import save_results  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.attention.dynamics import AttnTrainConfig, sen_deviation, train_attention  # noqa: E402
from attndiff.attention.model import AttentionClassifier, ModelConfig  # noqa: E402
from attndiff.attention.task import TaskConfig, load  # noqa: E402
from attndiff.jobs.attention import AttentionJobConfig, run_attention  # noqa: E402
from attndiff.run import Run  # noqa: E402


def lr_sweep(heads: list[str], lrs: list[float], time_budget: float) -> list[dict]:
    corpus = load(TaskConfig())  # the paper's synthetic task
    ids = corpus.topic_ids.numpy()
    rows = []
    for head in heads:
        for lr in lrs:
            epochs = round(time_budget / lr)
            model = AttentionClassifier(ModelConfig(head=head), len(corpus.words), len(corpus.classes))
            t = time.perf_counter()
            train_cfg = AttnTrainConfig(epochs=epochs, lr=lr, snapshot_every=max(1, epochs // 500))
            h = train_attention(model, corpus, train_cfg, progress=f"{head} lr {lr}")
            seconds = time.perf_counter() - t
            dev = sen_deviation(h.scores[:, ids].astype(np.float64), h.norms[:, ids].astype(np.float64),
                                TaskConfig().m, float(h.q_norm[0]))
            rows.append({"head": head, "lr": lr, "epochs": epochs, "sen_deviation_max": float(dev.max()),
                         "sen_deviation_median": float(np.median(dev)), "final_score": float(h.scores[-1, ids].mean()),
                         "attention": float(h.attention[-1]), "test_acc": float(h.test_acc[-1]),
                         "seconds": seconds, "ms_per_epoch": 1000 * seconds / epochs})
            print(rows[-1])
    return rows


def text_accuracy(config_path: str) -> dict:
    cfg = config.load(AttentionJobConfig, config_path)
    records = Run(run_attention(cfg)).metrics()
    finals = [r for r in records if r.get("tag", "").endswith("-final")]
    baseline = [r["test_acc"] for r in records if r.get("tag") == "bow-baseline"]
    return {"config": config_path, "test_acc": {r["variant"]: r["test_acc"] for r in finals},
            "epochs_per_s": {r["variant"]: r.get("epochs_per_s") for r in finals},
            "bow_baseline": baseline[-1] if baseline else None}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heads", nargs="+", default=["fc", "tc", "tl"])
    p.add_argument("--lrs", type=float, nargs="+", default=[0.4, 0.2, 0.1, 0.05])
    p.add_argument("--time", type=float, default=500.0, help="lr x epochs, fixed across learning rates (default 500)")
    p.add_argument("--text-config", default="configs/attention/rt-polarity.toml")
    p.add_argument("--skip-text", action="store_true")
    args = p.parse_args()
    results = {"time": args.time, "sweep": lr_sweep(args.heads, args.lrs, args.time)}
    if not args.skip_text:
        results["text"] = text_accuracy(args.text_config)
    save_results("attention", results, table(results))


def table(results: dict) -> str:
    lines = [f"Synthetic task (paper sizes), lr x epochs = {results['time']:g}: largest relative deviation of the "
             "8 topic words' (score, ||q|| ||v||) paths from the SEN relation over training.", "",
             "| head | lr | epochs | max deviation | median deviation | topic score | attention on topic word | "
             "test acc | wall time | ms / epoch |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["sweep"]:
        lines.append(f"| {r['head'].upper()} | {r['lr']:g} | {r['epochs']:,} | {r['sen_deviation_max']:.2e} | "
                     f"{r['sen_deviation_median']:.2e} | {r['final_score']:.2f} | {r['attention']:.3f} | "
                     f"{r['test_acc']:.3f} | {r['seconds']:.0f} s | {r['ms_per_epoch']:.1f} |")
    text = results.get("text")
    if text:
        accs = ", ".join(f"{k} {v:.3f}" for k, v in text["test_acc"].items())
        speed = ", ".join(f"{k} {v:.1f}" for k, v in text["epochs_per_s"].items() if v)
        lines += ["", f"Movie-review sentences (rt-polarity, seeded 80/10/10 split, {text['config']}): test accuracy "
                  f"{accs}; bag-of-words logistic regression {text['bow_baseline']:.3f}. Full-batch epochs per "
                  f"second: {speed}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
