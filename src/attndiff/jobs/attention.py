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

from attndiff import UserError, checkpoint, config, progress
from attndiff.attention.baselines import bag_of_words_baseline
from attndiff.attention.dynamics import AttnTrainConfig, History, sen_deviation, tracked_words, train_attention, word_m
from attndiff.attention.model import AttentionClassifier, ModelConfig, variant_model
from attndiff.attention.task import Corpus, TaskConfig, load
from attndiff.fsutil import write_npz
from attndiff.jobs.attention_report import BASELINE, attention_sections, final_tag
from attndiff.jobs.common import Job
from attndiff.run import Run


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


def summary(variant: str, mcfg: ModelConfig, corpus: Corpus, cfg: AttentionJobConfig, history: History) -> dict:
    words = tracked_words(corpus, history, cfg.top_words)
    record = {"tag": final_tag(variant), "variant": mcfg.variant, "epochs": int(history.epochs[-1]),
              "loss": float(history.loss[-1]), "train_acc": float(history.train_acc[-1]),
              "test_acc": float(history.test_acc[-1]), "attention": float(history.attention[-1]),
              "score": float(history.scores[-1, words].mean()), "norm": float(history.norms[-1, words].mean())}
    if not (mcfg.freeze_keys or mcfg.freeze_embeddings or mcfg.train_query):  # the theory's setting
        dev = sen_deviation(history.scores[:, words].astype(np.float64), history.norms[:, words].astype(np.float64),
                            word_m(corpus, words, cfg.task.m), float(history.q_norm[0]))
        record.update(sen_deviation_max=float(dev.max()), sen_deviation_median=float(np.median(dev)))
    return record


def run_variant(cfg: AttentionJobConfig, corpus: Corpus, run: Run, variant: str) -> History:
    path = run.path / "dynamics" / f"{variant}.npz"
    if run.done(final_tag(variant)) and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return History(**{k: z[k] for k in z.files})
    run.truncate_metrics(lambda r: r.get("tag") not in (variant, final_tag(variant)))
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
    progress.say(f"{mcfg.variant}: loss {record['loss']:.4f}, test accuracy {record['test_acc']:.3f}"
               + (f", SEN deviation {record['sen_deviation_max']:.2e}" if "sen_deviation_max" in record else ""))
    return history


def run_attention(cfg: AttentionJobConfig) -> Path:
    corpus = load(cfg.task)
    job = Job(cfg)
    run = job.run
    sizes = {k: len(v) for k, v in corpus.splits.items()}
    progress.say(f"{cfg.name}: task {corpus.name}, {len(corpus.words):,} words, sentences {sizes}, "
                 f"length {corpus.tokens.shape[1]}; variants {', '.join(cfg.variants)}; run folder {run.path}")
    histories = {v: run_variant(cfg, corpus, run, v) for v in cfg.variants}
    if cfg.baseline and not len(corpus.topic_ids) and not run.done(BASELINE):
        acc = bag_of_words_baseline(corpus)
        run.log({"tag": BASELINE, "test_acc": acc})
        progress.say(f"bag-of-words logistic regression: test accuracy {acc:.3f}")
    return job.finish(f"attndiff attention: {cfg.name}", lambda: attention_sections(cfg, corpus, run, histories))
