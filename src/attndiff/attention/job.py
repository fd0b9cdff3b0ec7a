"""`attndiff attention run`: train the attention classifier's variants on one task and report
their dynamics against the SEN relation.

A variant is a head with optional ablations, written like the paper's run names in lower case:
"fc", "tc", "tl", "fc-kf" (keys frozen), "tc-ef" (embeddings frozen), "fc-qt" (query trained).
Each variant trains in seconds to a minute; a finished one is kept (dynamics/<variant>.npz and
its checkpoint) and reused when the command is run again.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from attndiff import UserError, checkpoint, config
from attndiff.attention.dynamics import AttnTrainConfig, History, sen_deviation, sen_theory, train_attention
from attndiff.attention.model import AttentionClassifier, ModelConfig
from attndiff.attention.task import PAD, UNK, Corpus, TaskConfig, load
from attndiff.fsutil import write_npz
from attndiff.report.figures import plt
from attndiff.report.html import fig_tag, table, write_report
from attndiff.run import Run

ABLATIONS = {"kf": "freeze_keys", "ef": "freeze_embeddings", "qt": "train_query"}


@dataclasses.dataclass
class AttentionJobConfig:
    name: str = "attention-synthetic"
    out: str = ""  # run folder (default runs/<name>)
    variants: tuple[str, ...] = ("fc", "tc", "tl")
    top_words: int = 100  # real text: the highest-scoring words tracked in the SEN plots
    baseline: bool = True  # real text: bag-of-words logistic regression on the same split
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: AttnTrainConfig = dataclasses.field(default_factory=AttnTrainConfig)

    def validate(self):
        if not self.variants:
            raise UserError("variants must name at least one variant, e.g. [\"fc\"]")
        for v in self.variants:
            variant_model(self.model, v)
        if self.top_words < 1:
            raise UserError(f"top_words must be >= 1, got {self.top_words}")

    @property
    def run_dir(self) -> Path:
        return Path(self.out or f"runs/{self.name}")


def variant_model(base: ModelConfig, variant: str) -> ModelConfig:
    """The model settings of a variant name such as "tc-kf"."""
    head, *flags = variant.lower().split("-")
    if head not in ("fc", "tc", "tl") or any(f not in ABLATIONS for f in flags):
        raise UserError(f"bad variant {variant!r}: a head fc, tc or tl, then optional -kf, -ef, -qt")
    return dataclasses.replace(base, head=head, **{ABLATIONS[f]: True for f in flags})


def tracked_words(corpus: Corpus, history: History, top: int) -> np.ndarray:
    """The topic words (synthetic) or the `top` highest-scoring real words at the end."""
    if len(corpus.topic_ids):
        return corpus.topic_ids.numpy()
    order = np.argsort(-history.scores[-1])
    return np.array([w for w in order if w not in (PAD, UNK)][:top])


def word_m(corpus: Corpus, cfg: AttentionJobConfig, words: np.ndarray) -> np.ndarray:
    """The theory's m per word: the task's m (synthetic), else the mean sentence length minus 1."""
    if len(corpus.topic_ids):
        return np.full(len(words), float(cfg.task.m))
    return corpus.word_stats[2].numpy()[words].clip(min=1.0)


def summary(variant: str, mcfg: ModelConfig, corpus: Corpus, cfg: AttentionJobConfig, history: History) -> dict:
    words = tracked_words(corpus, history, cfg.top_words)
    record = {"tag": f"{variant}-final", "variant": mcfg.variant, "epochs": int(history.epochs[-1]),
              "loss": float(history.loss[-1]), "train_acc": float(history.train_acc[-1]),
              "test_acc": float(history.test_acc[-1]), "attention": float(history.attention[-1]),
              "score": float(history.scores[-1, words].mean()), "norm": float(history.norms[-1, words].mean())}
    if not (mcfg.freeze_keys or mcfg.freeze_embeddings or mcfg.train_query):  # the theory's setting
        dev = sen_deviation(history.scores[:, words].astype(np.float64), history.norms[:, words].astype(np.float64),
                            word_m(corpus, cfg, words), float(history.q_norm[0]))
        record.update(sen_deviation_max=float(dev.max()), sen_deviation_median=float(np.median(dev)))
    return record


def run_variant(cfg: AttentionJobConfig, corpus: Corpus, run: Run, variant: str) -> History:
    path = run.path / "dynamics" / f"{variant}.npz"
    done = any(r.get("tag") == f"{variant}-final" for r in run.metrics())
    if done and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return History(**{k: z[k] for k in z.files})
    run.truncate_metrics(lambda r: r.get("tag") not in (variant, f"{variant}-final"))
    mcfg = variant_model(cfg.model, variant)
    torch.manual_seed(mcfg.seed)
    model = AttentionClassifier(mcfg, len(corpus.words), len(corpus.classes))
    t0 = time.perf_counter()
    history = train_attention(model, corpus, cfg.train, padding=cfg.task.padding, progress=mcfg.variant)
    seconds = time.perf_counter() - t0
    write_npz(path, **history.arrays())
    checkpoint.save(run.checkpoints / f"{variant}.safetensors", model.state_dict(),
                    {"config": config.to_dict(cfg), "variant": variant, "vocab": len(corpus.words)})
    for i, epoch in enumerate(history.epochs):
        run.log({"tag": variant, "step": int(epoch), "loss": float(history.loss[i]),
                 "train_acc": float(history.train_acc[i]), "test_acc": float(history.test_acc[i]),
                 "attention": float(history.attention[i])})
    record = {**summary(variant, mcfg, corpus, cfg, history), "seconds": round(seconds, 1),
              "epochs_per_s": cfg.train.epochs / seconds}
    run.log(record)
    tqdm.write(f"{mcfg.variant}: loss {record['loss']:.4f}, test accuracy {record['test_acc']:.3f}"
               + (f", SEN deviation {record['sen_deviation_max']:.2e}" if "sen_deviation_max" in record else ""))
    return history


def bag_of_words_baseline(corpus: Corpus) -> float:
    """Test accuracy of a logistic regression on binary bag-of-words features (same vocabulary and split)."""
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    def features(split):
        tokens, labels = corpus.part(split)
        rows = torch.arange(len(tokens))[:, None].expand_as(tokens)[tokens != PAD].numpy()
        cols = tokens[tokens != PAD].numpy()
        x = csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(tokens), len(corpus.words)))
        x.data[:] = 1.0  # presence, not counts
        return x, labels.numpy()

    x, y = features("train")
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(x, y)
    xt, yt = features("test")
    return float(clf.score(xt, yt))


def run_attention(cfg: AttentionJobConfig) -> Path:
    corpus = load(cfg.task)
    run = Run(cfg.run_dir)
    run.write_config(config.dumps_toml(config.to_dict(cfg)))
    sizes = {k: len(v) for k, v in corpus.splits.items()}
    tqdm.write(f"{cfg.name}: task {corpus.name}, {len(corpus.words):,} words, sentences {sizes}, "
               f"length {corpus.tokens.shape[1]}; variants {', '.join(cfg.variants)}; run folder {run.path}")
    histories = {v: run_variant(cfg, corpus, run, v) for v in cfg.variants}
    if cfg.baseline and not len(corpus.topic_ids) and not any(r.get("tag") == "bow-baseline" for r in run.metrics()):
        acc = bag_of_words_baseline(corpus)
        run.log({"tag": "bow-baseline", "test_acc": acc})
        tqdm.write(f"bag-of-words logistic regression: test accuracy {acc:.3f}")
    report = write_report(run.path, title=f"attndiff attention: {cfg.name}",
                          extra_sections=attention_sections(cfg, corpus, run, histories))
    tqdm.write(f"report: {report}")
    return run.path


# --- figures -------------------------------------------------------------------------------

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
    count, class_counts, _ = corpus.word_stats
    scores = history.scores.copy()
    scores[:, [PAD, UNK]] = -np.inf
    top = scores.argmax(1)
    shares = (class_counts[top] / count[top].clamp_min(1)[:, None]).numpy()
    purity = np.abs(shares[:, 0] - shares[:, -1])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(history.epochs, purity)
    axes[0].set_title("purity |p_pos - p_neg| of the top-scoring word")
    axes[1].semilogy(history.epochs, count[top].numpy())
    axes[1].set_title("its frequency in the training split")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return fig


def attention_sections(cfg: AttentionJobConfig, corpus: Corpus, run: Run, histories: dict[str, History]) -> list[str]:
    records = [r for r in run.metrics() if r.get("tag", "").endswith("-final")]
    parts = ["<h2>Variants</h2>", table(records, [
        ("variant", "variant", "s"), ("epochs", "epochs", "d"), ("loss", "train loss", ".4f"),
        ("train_acc", "train acc", ".3f"), ("test_acc", "test acc", ".3f"),
        ("attention", "attention on topic/top word", ".3f"), ("score", "mean score (tracked)", ".3f"),
        ("norm", "mean norm (tracked)", ".3f"), ("sen_deviation_max", "max SEN deviation", ".2e")])]
    baseline = [r for r in run.metrics() if r.get("tag") == "bow-baseline"]
    if baseline:
        parts.append(f"<p>Bag-of-words logistic regression on the same split: test accuracy "
                     f"{baseline[-1]['test_acc']:.3f}.</p>")
    words = {v: tracked_words(corpus, h, cfg.top_words) for v, h in histories.items()}
    label = "topic words" if len(corpus.topic_ids) else f"top {cfg.top_words} words"
    parts.append(f"<h2>Score and embedding norm against the SEN relation ({label})</h2>")
    for v, h in histories.items():
        mcfg = variant_model(cfg.model, v)
        fig = sen_figure(h, words[v], word_m(corpus, cfg, words[v]), mcfg.variant)
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
