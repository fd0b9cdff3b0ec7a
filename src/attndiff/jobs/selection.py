"""Model selection on held-out data: score a run's checkpoints and keep the best.

In the data-limited regime a model's last checkpoint is not its best: trained long on a small
set, it drifts toward copying it. `score_checkpoints` samples each checkpoint of a run folder
(in training order, across SFBD's phases), scores FID against a held-out split and counts
near-copies against named reference sets (what the model trained on, the held-back originals of
noisy images), and logs one `select` record per checkpoint and split to the run's metrics.jsonl,
so a rerun skips what is done. `best` picks the lowest FID. Selecting on a validation split and
reporting the chosen checkpoint's FID on the test split (with other sample seeds) keeps the
reported number free of the selection.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from attndiff import UserError, progress, seeding
from attndiff.jobs.train import load_model
from attndiff.metrics import fid as fid_metric
from attndiff.metrics.memorization import copy_rate
from attndiff.report.figures import save_grid
from attndiff.run import Run

SELECT = "select"
_CHECKPOINT = re.compile(r"^(?P<tag>.+)-(?P<step>\d{8})\.safetensors$")


@dataclasses.dataclass(frozen=True)
class Candidate:
    path: Path
    phase: str  # the checkpoint's tag: pretrain, round1, ... or a single phase (train, clean-only, ...)
    step: int  # training steps since the run began, over all phases


def _phase_key(tag: str) -> tuple[int, int, str]:
    """SFBD's order (pretrain, round1, round2, ...); any other tag after them, by name."""
    if tag == "pretrain":
        return (0, 0, tag)
    found = re.fullmatch(r"round(\d+)", tag)
    return (1, int(found.group(1)), tag) if found else (2, 0, tag)


def candidates(run_dir: str | Path, *, every: int = 0, upto: int = 0) -> list[Candidate]:
    """A run's checkpoints in training order with their global step; only steps that are
    multiples of `every` (> 0) and at most `upto` (> 0)."""
    phases: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted((Path(run_dir) / "checkpoints").glob("*.safetensors")):
        found = _CHECKPOINT.match(path.name)
        if found:
            phases.setdefault(found["tag"], []).append((int(found["step"]), path))
    out, offset = [], 0
    for tag in sorted(phases, key=_phase_key):
        steps = sorted(phases[tag])
        out += [Candidate(path, tag, offset + step) for step, path in steps]
        offset += steps[-1][0]  # a phase's last checkpoint is its end (pruning keeps the newest)
    return [c for c in out if (not every or c.step % every == 0) and (not upto or c.step <= upto)]


def score_checkpoint(run: Run, c: Candidate, *, dataset: str, split: str, n: int, sample_steps: int = 12,
                     references: dict[str, torch.Tensor] | None = None, fid_against: dict | None = None,
                     precision: str = "fp32", batch_size: int = 250) -> dict:
    """FID of n EMA samples of checkpoint c against n images of `split`, the FID of the same
    samples against each further set of Inception features in `fid_against` (`fid_<name>`: an
    Inv-FID's group orbit, say) and the near-copy rate against each image set in `references`
    (`copy_<name>`); logged once, read back on a rerun."""
    keys = [f"fid_{k}" for k in fid_against or {}] + [f"copy_{k}" for k in references or {}]
    done = run.last(SELECT, checkpoint=c.path.name, split=split, fid_n=n)
    if done is not None and all(k in done for k in keys):
        return done
    first = seeding.derive(0, "select", split) % 2**31  # each split its own samples
    samples = load_model(c.path).sample(range(first, first + n), steps=sample_steps, batch_size=batch_size,
                                        progress=False)
    save_grid(samples[:64], run.samples / f"{SELECT}-{split}-{c.path.stem}.png")
    gen = fid_metric.features(samples, precision=precision, progress=False)
    record = {"tag": SELECT, "checkpoint": c.path.name, "phase": c.phase, "step": c.step, "split": split,
              **fid_metric.fid_of_features(gen, dataset, split, n, resolution=samples.shape[-1],
                                           precision=precision, progress=False)}
    for name, feats in (fid_against or {}).items():
        record[f"fid_{name}"] = fid_metric.fid_from_features(gen, feats)
    for name, images in (references or {}).items():
        record[f"copy_{name}"] = copy_rate(samples, images)["copy_rate"]
    run.log(record)
    return record


def score_checkpoints(run_dir: str | Path, *, every: int = 0, upto: int = 0, **options) -> list[dict]:
    """score_checkpoint for each candidate (see `candidates`); the records in training order."""
    run, found = Run(run_dir), candidates(run_dir, every=every, upto=upto)
    if not found:
        raise UserError(f"no checkpoints to score in {Path(run_dir) / 'checkpoints'}"
                        + (f" at multiples of {every} steps" if every else "") + (f" up to {upto}" if upto else ""))
    records = []
    for c in found:
        records.append(score_checkpoint(run, c, **options))
        r = records[-1]
        progress.say(f"{Path(run_dir).name} {c.phase} (step {c.step}): {r['split']} FID {r['fid']:.2f} (N={r['fid_n']})"
                     + "".join(f", {k[5:]} copies {v:.1%}" for k, v in r.items() if k.startswith("copy_")))
    return records


def best(records: list[dict], key: str = "fid") -> dict:
    """The record with the lowest `key` (the earliest among equals)."""
    return min(records, key=lambda r: (r[key], r["step"]))
