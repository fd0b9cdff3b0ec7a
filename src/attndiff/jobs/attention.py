"""`attndiff attention run`: train the attention classifier's variants on one task and report
their dynamics against the SEN relation.

A variant is a head with optional ablations, written like the paper's run names in lower case:
"fc", "tc", "tl", "fc-kf" (keys frozen), "tc-ef" (embeddings frozen), "fc-qt" (query trained).
Each variant trains in seconds to a minute; a finished one is kept (dynamics/<variant>.npz and
its checkpoint) and reused when the command is run again.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
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


def train_variant(cfg: AttentionJobConfig, corpus: Corpus, variant: str, threads: int = 0,
                  progress_bar: bool = True) -> tuple[History, dict[str, torch.Tensor], float]:
    """One variant trained from its seed: its history, weights and seconds (here or in a worker process)."""
    if threads:
        torch.set_num_threads(threads)
    mcfg = variant_model(cfg.model, variant)
    torch.manual_seed(mcfg.seed)
    model = AttentionClassifier(mcfg, len(corpus.words), len(corpus.classes))
    t0 = time.perf_counter()
    history = train_attention(model, corpus, cfg.train, padding=cfg.task.padding,
                              progress=mcfg.variant if progress_bar else False)
    return history, model.state_dict(), time.perf_counter() - t0


def train_variants(cfg: AttentionJobConfig, corpus: Corpus, variants: list[str]):
    """Yields (variant, trained) as each finishes; several at once in worker processes when there
    are cores for them (an epoch is a few small sparse products, which more threads speed up
    less than more processes do). Up to two processes per core: three variants on two cores
    share them and end together (1.5 variants' time) instead of leaving one core idle while the
    third trains alone (2 variants' time)."""
    cores = torch.get_num_threads()
    workers = min(len(variants), 2 * cores)
    if cores < 2 or workers < 2:
        yield from ((v, train_variant(cfg, corpus, v)) for v in variants)
        return
    threads = max(1, cores // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool, \
            progress.bar(total=len(variants), desc=f"variants ({workers} processes)", unit="variant") as bar:
        futures = {pool.submit(train_variant, cfg, corpus, v, threads, False): v for v in variants}
        for future in as_completed(futures):
            bar.update(1)
            yield futures[future], future.result()


def save_variant(cfg: AttentionJobConfig, corpus: Corpus, run: Run, variant: str, trained: tuple) -> None:
    """A trained variant's dynamics, checkpoint, metrics and summary record."""
    history, weights, seconds = trained
    mcfg = variant_model(cfg.model, variant)
    run.truncate_metrics(lambda r: r.get("tag") not in (variant, final_tag(variant)))
    write_npz(run.path / "dynamics" / f"{variant}.npz", **history.arrays())
    checkpoint.save(run.checkpoints / f"{variant}.safetensors", weights,
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


def load_variant(run: Run, variant: str) -> History | None:
    """A finished variant's dynamics, or None."""
    path = run.path / "dynamics" / f"{variant}.npz"
    if not (run.done(final_tag(variant)) and path.exists()):
        return None
    with np.load(path, allow_pickle=False) as z:
        return History(**{k: z[k] for k in z.files})


def run_attention(cfg: AttentionJobConfig) -> Path:
    corpus = load(cfg.task)
    job = Job(cfg)
    run = job.run
    sizes = {k: len(v) for k, v in corpus.splits.items()}
    progress.say(f"{cfg.name}: task {corpus.name}, {len(corpus.words):,} words, sentences {sizes}, "
                 f"length {corpus.tokens.shape[1]}; variants {', '.join(cfg.variants)}; run folder {run.path}")
    histories = {v: load_variant(run, v) for v in cfg.variants}
    pending = [v for v, h in histories.items() if h is None]
    for variant, trained in train_variants(cfg, corpus, pending):  # each saved as soon as it is done
        save_variant(cfg, corpus, run, variant, trained)
        histories[variant] = trained[0]
    if cfg.baseline and not len(corpus.topic_ids) and not run.done(BASELINE):
        acc = bag_of_words_baseline(corpus)
        run.log({"tag": BASELINE, "test_acc": acc})
        progress.say(f"bag-of-words logistic regression: test accuracy {acc:.3f}")
    return job.finish(f"attndiff attention: {cfg.name}", lambda: attention_sections(cfg, corpus, run, histories))
