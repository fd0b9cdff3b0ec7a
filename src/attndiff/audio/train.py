"""`attndiff audio run`: train one model kind over seeds (and folds), evaluate, report.

For every (seed, test fold): train on the other folds with Adam, then measure accuracy and
macro precision / recall / F1 on the test fold, its confusion matrix and (CAB-CNN) the mean
selector weights per true class. Scores are reported as mean and standard deviation over all
(seed, fold) pairs. Each finished pair is logged and checkpointed, so a killed run continues
with the next unfinished pair.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from attndiff import UserError, checkpoint, config
from attndiff.audio.features import FeatureConfig, log_mel
from attndiff.audio.models import AudioClassifier, ModelConfig
from attndiff.data import audio as audio_data
from attndiff.fsutil import write_npz
from attndiff.paths import cache_dir
from attndiff.report import figures
from attndiff.report.figures import plt
from attndiff.report.html import fig_tag, table, write_report
from attndiff.run import Run

KINDS = ("cabcnn", "linear", "mlp")


@dataclasses.dataclass
class AudioTrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    spec_augment: bool = False  # random frequency and time masks on training spectrograms
    freq_mask: int = 8  # widest frequency mask (mel bins)
    time_mask: int = 16  # widest time mask (frames)

    def validate(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise UserError("train: need epochs >= 1, batch_size >= 1, lr > 0, weight_decay >= 0")


@dataclasses.dataclass
class AudioJobConfig:
    name: str = "spoken-digits"
    out: str = ""  # run folder (default runs/<name>-<model>)
    model_kind: Literal["cabcnn", "linear", "mlp"] = "cabcnn"
    seeds: int = 5
    audio: audio_data.AudioConfig = dataclasses.field(default_factory=audio_data.AudioConfig)
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: AudioTrainConfig = dataclasses.field(default_factory=AudioTrainConfig)

    def validate(self):
        if self.seeds < 1:
            raise UserError(f"seeds must be >= 1, got {self.seeds}")

    @property
    def run_dir(self) -> Path:
        return Path(self.out or f"runs/{self.name}-{self.model_kind}")


def features_of(cfg: AudioJobConfig) -> tuple[audio_data.AudioDataset, torch.Tensor]:
    """The dataset and its log-mel spectrograms (cached for the built-in sets)."""
    data = audio_data.load(cfg.audio)
    if ":" in cfg.audio.name:  # user data may change on disk: always recompute
        return data, log_mel(data.waves, data.sample_rate, cfg.features)
    key = json.dumps([config.to_dict(cfg.audio), config.to_dict(cfg.features)], sort_keys=True)
    path = cache_dir() / "audio" / f"logmel-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return data, torch.from_numpy(z["features"])
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    feats = log_mel(data.waves, data.sample_rate, cfg.features)
    write_npz(path, features=feats.numpy())
    return data, feats


def spec_augment(x: torch.Tensor, cfg: AudioTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """One random frequency band and one random time span set to the clip's mean, per clip."""
    n, f, t = x.shape
    out = x.clone()
    fill = x.mean((1, 2))
    for i in range(n):
        wf, wt = (int(torch.randint(w + 1, (1,), generator=gen)) for w in (cfg.freq_mask, cfg.time_mask))
        f0 = int(torch.randint(max(1, f - wf), (1,), generator=gen))
        t0 = int(torch.randint(max(1, t - wt), (1,), generator=gen))
        out[i, f0:f0 + wf] = fill[i]
        out[i, :, t0:t0 + wt] = fill[i]
    return out


def macro_scores(y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, float]:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f1, _ = precision_recall_fscore_support(y, pred, labels=list(range(k)), average="macro", zero_division=0)
    return {"accuracy": float((y == pred).mean()), "precision": float(p), "recall": float(r), "f1": float(f1)}


@torch.no_grad()
def predict(model: AudioClassifier, x: torch.Tensor, batch: int = 256):
    model.eval()
    outs = [model(x[i:i + batch]) for i in range(0, len(x), batch)]
    log_p = torch.cat([o[0] for o in outs])
    alpha = torch.cat([o[1] for o in outs]) if outs[0][1] is not None else None
    return log_p, alpha


def train_one(cfg: AudioJobConfig, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
              n_classes: int, seed: int, run: Run, tag: str) -> AudioClassifier:
    torch.manual_seed(seed)
    model = AudioClassifier(cfg.model, cfg.model_kind, n_classes)
    t = cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    for epoch in tqdm(range(1, t.epochs + 1), desc=tag, unit="epoch", leave=False):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), t.batch_size):
            idx = perm[start:start + t.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = spec_augment(x[idx], t, gen) if t.spec_augment else x[idx]
            log_p, alpha = model(xb)
            loss = F.nll_loss(log_p, y[idx])
            if alpha is not None and cfg.model.selector_entropy:
                loss = loss + cfg.model.selector_entropy * -(alpha * alpha.clamp_min(1e-12).log()).sum(1).mean()
            if not torch.isfinite(loss):
                raise UserError(f"the loss became {loss.item()} in epoch {epoch} ({tag}); lower train.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        test_acc = (predict(model, x_test)[0].argmax(1) == y_test).float().mean().item()
        run.log({"tag": tag, "step": epoch, "loss": total / len(x), "test_acc": test_acc})
    return model


def run_audio(cfg: AudioJobConfig) -> Path:
    data, feats = features_of(cfg)
    run = Run(cfg.run_dir)
    run.write_config(config.dumps_toml(config.to_dict(cfg)))
    k = len(data.classes)
    splits = data.splits()
    tqdm.write(f"{cfg.name}: {len(data)} clips of {cfg.audio.duration:g} s, {k} classes, "
               f"log-mel {tuple(feats.shape[1:])}; model {cfg.model_kind}; {cfg.seeds} seed(s) x "
               f"{len(splits)} test fold(s); run folder {run.path}")
    done = {r["tag"] for r in run.metrics() if r.get("kind") == "result"}
    for seed in range(cfg.seeds):
        for fold, tr, te in splits:
            tag = f"{cfg.model_kind}-s{seed}-f{fold}"
            if tag in done:
                continue
            if len(tr) == 0 or len(te) == 0:
                raise UserError(f"{data.name}: fold {fold} leaves an empty train or test set")
            run.truncate_metrics(lambda r, tag=tag: r.get("tag") != tag)
            t0 = time.perf_counter()
            model = train_one(cfg, feats[tr], data.labels[tr], feats[te], data.labels[te], k, seed, run, tag)
            seconds = time.perf_counter() - t0
            log_p, alpha = predict(model, feats[te])
            y, pred = data.labels[te].numpy(), log_p.argmax(1).numpy()
            confusion = np.zeros((k, k), np.int64)
            np.add.at(confusion, (y, pred), 1)
            record = {"tag": tag, "kind": "result", "seed": seed, "fold": fold, **macro_scores(y, pred, k),
                      "seconds": round(seconds, 1), **model.parameter_counts(), "confusion": confusion.tolist()}
            if alpha is not None:
                record["selection"] = [alpha[torch.from_numpy(y == c)].mean(0).tolist() if (y == c).any() else None
                                       for c in range(k)]
            checkpoint.save(run.checkpoints / f"{tag}.safetensors", model.state_dict(),
                            {"config": config.to_dict(cfg), "classes": list(data.classes), "seed": seed, "fold": fold})
            run.log(record)
            tqdm.write(f"{tag}: accuracy {record['accuracy']:.3f}, macro F1 {record['f1']:.3f} ({seconds:.0f} s)")
    results = [r for r in run.metrics() if r.get("kind") == "result"]
    summary = summarize(results)
    tqdm.write(f"{cfg.model_kind} on {cfg.name}: " + ", ".join(
        f"{m} {summary[m]['mean']:.3f} ± {summary[m]['std']:.3f}" for m in ("accuracy", "f1")))
    report = write_report(run.path, title=f"attndiff audio: {cfg.model_kind} on {cfg.name}",
                          extra_sections=audio_sections(run.metrics(), summary, data.classes))
    tqdm.write(f"report: {report}")
    return run.path


def summarize(results: list[dict]) -> dict:
    out = {}
    for m in ("accuracy", "precision", "recall", "f1", "seconds"):
        v = np.array([r[m] for r in results])
        out[m] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
    out["head"], out["total"] = results[0]["head"], results[0]["total"]
    return out


def audio_sections(records: list[dict], summary: dict, classes) -> list[str]:
    results = [r for r in records if r.get("kind") == "result"]
    rows = [{"metric": m, "value": f"{summary[m]['mean']:.3f} ± {summary[m]['std']:.3f}"}
            for m in ("accuracy", "precision", "recall", "f1")]
    parts = ["<h2>Scores (mean ± std over seeds and folds)</h2>", table(rows, [("metric", "", "s"),
                                                                           ("value", "", "s")]),
             f"<p>{summary['accuracy']['n']} runs; parameters: head {summary['head']:,}, whole model "
             f"{summary['total']:,}; {summary['seconds']['mean']:.0f} s per run.</p>",
             table(results, [("tag", "run", "s"), ("accuracy", "accuracy", ".3f"), ("f1", "macro F1", ".3f"),
                             ("seconds", "s", ".0f")])]
    fig = figures.curves([r for r in records if "test_acc" in r and r.get("kind") != "result"], "test_acc",
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
