"""The figures and report sections of `attndiff attention run`."""

from __future__ import annotations

import numpy as np

from attndiff.attention.dynamics import History, sen_theory, top_word_purity, tracked_words, word_m
from attndiff.attention.model import variant_model
from attndiff.attention.task import Corpus
from attndiff.report.figures import plt
from attndiff.report.html import fig_tag, table
from attndiff.run import Run

BASELINE = "bow-baseline"  # the tag of the bag-of-words baseline's record


def final_tag(variant: str) -> str:
    """The tag of a variant's summary record."""
    return f"{variant}-final"


def sen_figure(history: History, words: np.ndarray, m: np.ndarray, title: str):
    """Each tracked word's path (s, ||q|| ||v||) over training against the SEN curve."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    q = float(history.q_norm[0])
    s = history.scores[:, words]
    every = max(1, len(s) // 25)  # markers on a subset of the snapshots, so the theory line stays visible
    for j in range(len(words)):
        ax.plot(s[::every, j], q * history.norms[::every, words[j]], "o-", ms=3, color="#4477aa", lw=0.8,
                alpha=0.7 if len(words) < 20 else 0.25, label="measured" if j == 0 else None)
    grid = np.linspace(min(0.0, float(s.min())), float(s.max()) * 1.05 + 1e-9, 200)
    lo, hi = float(np.min(m)), float(np.max(m))
    ax.plot(grid, sen_theory(grid, lo, q_norm=q), "k--", lw=1.5, label=f"theory, m = {lo:.0f}")
    if hi > lo:
        ax.plot(grid, sen_theory(grid, hi, q_norm=q), "k:", lw=1.5, label=f"theory, m = {hi:.0f}")
    ax.set_xlabel("score s = q . k")
    ax.set_ylabel("||q|| ||v||")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def over_epochs(histories: dict[str, History], words: dict[str, np.ndarray], key: str, title: str):
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for variant, h in histories.items():
        values = getattr(h, key)[:, words[variant]].mean(1)
        ax.plot(h.epochs, values, label=variant)
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def histograms(history: History, words: np.ndarray, label: str):
    rest = np.setdiff1d(np.arange(2, history.scores.shape[1]), words)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, name in ((axes[0], "norms", "embedding norm ||v||"), (axes[1], "scores", "score s")):
        final = getattr(history, key)[-1]
        ax.hist(final[rest], bins=50, alpha=0.7, label="other words", density=True)
        ax.hist(final[words], bins=20, alpha=0.7, label=label, density=True)
        ax.set_title(f"final {name}")
        ax.legend(fontsize=8)
    return fig


def purity_figure(history: History, corpus: Corpus):
    """Topic purity |p_pos - p_neg| and frequency of the top-scoring word at each snapshot."""
    purity, count = top_word_purity(history, corpus)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(history.epochs, purity)
    axes[0].set_title("purity |p_pos - p_neg| of the top-scoring word")
    axes[1].semilogy(history.epochs, count)
    axes[1].set_title("its frequency in the training split")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return fig


def attention_sections(cfg, corpus: Corpus, run: Run, histories: dict[str, History]) -> list[str]:
    records = [r for r in run.metrics() if r.get("tag", "").endswith(final_tag(""))]
    parts = ["<h2>Variants</h2>", table(records, [
        ("variant", "variant", "s"), ("epochs", "epochs", "d"), ("loss", "train loss", ".4f"),
        ("train_acc", "train acc", ".3f"), ("test_acc", "test acc", ".3f"),
        ("attention", "attention on topic/top word", ".3f"), ("score", "mean score (tracked)", ".3f"),
        ("norm", "mean norm (tracked)", ".3f"), ("sen_deviation_max", "max SEN deviation", ".2e")])]
    baseline = run.last(BASELINE)
    if baseline:
        parts.append(f"<p>Bag-of-words logistic regression on the same split: test accuracy "
                     f"{baseline['test_acc']:.3f}.</p>")
    words = {v: tracked_words(corpus, h, cfg.top_words) for v, h in histories.items()}
    label = "topic words" if len(corpus.topic_ids) else f"top {cfg.top_words} words"
    parts.append(f"<h2>Score and embedding norm against the SEN relation ({label})</h2>")
    for v, h in histories.items():
        mcfg = variant_model(cfg.model, v)
        fig = sen_figure(h, words[v], word_m(corpus, words[v], cfg.task.m), mcfg.variant)
        parts.append(fig_tag(fig, f"SEN {mcfg.variant}"))
    parts.append(f"<h2>Ablations: {label} over training</h2>")
    parts.append(fig_tag(over_epochs(histories, words, "scores", "mean score"), "scores over epochs"))
    parts.append(fig_tag(over_epochs(histories, words, "norms", "mean embedding norm"), "norms over epochs"))
    first = next(iter(histories))
    parts.append(f"<h2>Final distributions ({variant_model(cfg.model, first).variant})</h2>")
    parts.append(fig_tag(histograms(histories[first], words[first], label), "final histograms"))
    if not len(corpus.topic_ids):
        parts.append("<h2>What the top-scoring word is over training</h2>")
        parts.append(fig_tag(purity_figure(histories[first], corpus), "purity"))
        count, class_counts, _ = corpus.word_stats
        h = histories[first]
        rows = [{"word": corpus.words[w], "score": float(h.scores[-1, w]), "norm": float(h.norms[-1, w]),
                 "count": int(count[w]), "purity": float(abs(class_counts[w, 0] - class_counts[w, -1]) /
                                                          max(float(count[w]), 1))} for w in words[first][:20]]
        parts.append(table(rows, [("word", "word", "s"), ("score", "score", ".3f"), ("norm", "norm", ".3f"),
                                  ("count", "train count", "d"), ("purity", "purity", ".2f")]))
    return parts
