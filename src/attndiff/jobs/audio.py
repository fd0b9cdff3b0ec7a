"""`attndiff audio run`: train one model kind over seeds (and folds), evaluate, report.

For every (seed, test fold): train on the other folds with AdamW, then measure accuracy and
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

import numpy as np
import torch

from attndiff import UserError, checkpoint, config, progress
from attndiff.audio.features import FeatureConfig, log_mel
from attndiff.audio.models import MODELS, ModelConfig
from attndiff.audio.train import AudioTrainConfig, macro_scores, predict, train_one
from attndiff.data import audio as audio_data
from attndiff.fsutil import write_npz
from attndiff.jobs.audio_report import RESULT, audio_sections, summarize
from attndiff.jobs.common import Job
from attndiff.paths import cache_dir


@dataclasses.dataclass
class AudioJobConfig:
    name: str = "spoken-digits"
    out: str = ""  # run folder (default runs/<name>-<model>)
    model_kind: str = "cabcnn"  # one of audio.models.MODELS
    seeds: int = 5
    audio: audio_data.AudioConfig = dataclasses.field(default_factory=audio_data.AudioConfig)
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: AudioTrainConfig = dataclasses.field(default_factory=AudioTrainConfig)

    def validate(self):
        config.check_choice("model_kind", self.model_kind, MODELS)
        if self.seeds < 1:
            raise UserError(f"seeds must be >= 1, got {self.seeds}")

    @property
    def run_dir(self) -> Path:
        return Path(self.out or f"runs/{self.name}-{self.model_kind}")


def features_of(cfg: AudioJobConfig) -> tuple[audio_data.AudioDataset, torch.Tensor]:
    """The dataset and its log-mel spectrograms (cached for the built-in sets)."""
    data = audio_data.load(cfg.audio.name, options=cfg.audio)
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


def run_pair(cfg: AudioJobConfig, data, feats: torch.Tensor, run, seed: int, fold: int, tr, te) -> dict:
    """Train and score one (seed, test fold) pair; logs its result record and saves its weights."""
    tag, k = f"{cfg.model_kind}-s{seed}-f{fold}", len(data.classes)
    if len(tr) == 0 or len(te) == 0:
        raise UserError(f"{data.name}: fold {fold} leaves an empty train or test set")
    run.truncate_metrics(lambda r: r.get("tag") != tag)  # a killed pair's epochs are redone
    t0 = time.perf_counter()
    model = train_one(cfg.model_kind, cfg.model, cfg.train, feats[tr], data.labels[tr], feats[te], data.labels[te],
                      k, seed, run, tag)
    seconds = time.perf_counter() - t0
    log_p, alpha = predict(model, feats[te])
    y, pred = data.labels[te].numpy(), log_p.argmax(1).numpy()
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (y, pred), 1)
    record = {"tag": tag, "kind": RESULT, "seed": seed, "fold": fold, **macro_scores(y, pred, k),
              "seconds": round(seconds, 1), **model.parameter_counts(), "confusion": confusion.tolist()}
    if alpha is not None:
        record["selection"] = [alpha[torch.from_numpy(y == c)].mean(0).tolist() if (y == c).any() else None
                               for c in range(k)]
    checkpoint.save(run.checkpoints / f"{tag}.safetensors", model.state_dict(),
                    {"config": config.to_dict(cfg), "classes": list(data.classes), "seed": seed, "fold": fold})
    run.log(record)
    progress.say(f"{tag}: accuracy {record['accuracy']:.3f}, macro F1 {record['f1']:.3f} ({seconds:.0f} s)")
    return record


def prepare_data(cfg: AudioJobConfig) -> int:
    """`audio prepare`: synthesise a generated dataset into the cache."""
    if cfg.audio.name not in audio_data.GENERATED:
        raise UserError(f"nothing to prepare for {cfg.audio.name!r}: "
                        f"only {', '.join(audio_data.GENERATED)} are generated")
    print(f"{cfg.audio.name}: {audio_data.prepare(cfg.audio.name, cfg.audio)}")
    return 0


def run_audio(cfg: AudioJobConfig) -> Path:
    data, feats = features_of(cfg)
    job = Job(cfg)
    run, splits = job.run, data.splits()
    progress.say(f"{cfg.name}: {len(data)} clips of {cfg.audio.duration:g} s, {len(data.classes)} classes, "
                 f"log-mel {tuple(feats.shape[1:])}; model {cfg.model_kind}; {cfg.seeds} seed(s) x "
                 f"{len(splits)} test fold(s); run folder {run.path}")
    done = {r["tag"] for r in run.find(kind=RESULT)}
    for seed in range(cfg.seeds):
        for fold, tr, te in splits:
            if f"{cfg.model_kind}-s{seed}-f{fold}" not in done:
                run_pair(cfg, data, feats, run, seed, fold, tr, te)
    summary = summarize(run.find(kind=RESULT))
    progress.say(f"{cfg.model_kind} on {cfg.name}: " + ", ".join(
        f"{m} {summary[m]['mean']:.3f} ± {summary[m]['std']:.3f}" for m in ("accuracy", "f1")))
    return job.finish(f"attndiff audio: {cfg.model_kind} on {cfg.name}",
                      lambda: audio_sections(run.metrics(), summary, data.classes))
