"""`attndiff sfbd baseline --kind KIND`: one of SFBD's baselines (sfbd.baselines.BASELINES) at the
SFBD run's training compute, scored the same way."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from attndiff import UserError, progress
from attndiff.diffusion import model
from attndiff.diffusion.training import TrainState, train
from attndiff.jobs.sfbd import SFBDJobConfig, load_split
from attndiff.jobs.train import evaluate, model_meta, start
from attndiff.sfbd.baselines import BASELINES, ambient_loss


def eval_tag(kind: str) -> str:
    return f"{kind}-eval"


def run_folder(cfg: SFBDJobConfig, kind: str) -> Path:
    """Where baseline `kind` of an SFBD config runs: beside the SFBD run, its name suffixed."""
    return cfg.run_dir.with_name(f"{cfg.run_dir.name}-{kind}")


def run_baseline(cfg: SFBDJobConfig, kind: str) -> Path:
    if kind not in BASELINES:
        raise UserError(f"unknown baseline kind {kind!r} (known: {', '.join(BASELINES)})")
    baseline = BASELINES[kind]
    if baseline.ambient and not model.recipe(cfg.symmetry.method).edm_loss:
        plain = ", ".join(name for name, r in model.RECIPES.items() if r.edm_loss)
        raise UserError(f"the ambient baseline supports symmetry.method {plain} (its loss is its own)")
    split = load_split(cfg)
    images, extras = baseline.data(split)
    job, cfg, spec = start(cfg, split.clean.shape, run_dir=run_folder(cfg, kind),
                           header={"baseline": kind})
    train_cfg = dataclasses.replace(cfg.train, steps=cfg.total_steps)
    progress.say(f"baseline {kind}: {len(images)} training images, {train_cfg.steps} steps (as the SFBD run)")
    state = TrainState(spec.new_net(), train_cfg)
    loss_fn = (functools.partial(ambient_loss, cfg=cfg.edm, sigma_zeta=cfg.sfbd.sigma_zeta) if baseline.ambient
               else spec.loss(state.ema))
    train(state, images, train_cfg, edm=cfg.edm, run=job.run, tag=kind, extras=extras, loss_fn=loss_fn,
          meta=model_meta(cfg, split.clean.shape), device=cfg.device, desc=kind)

    def score():  # rank 0 alone, once
        if not job.run.done(eval_tag(kind)):
            evaluate(spec.sampling_denoiser(state.ema), spec, job.run, cfg.sample, cfg.fid,
                     fid_dataset=cfg.fid_reference, tag=kind, step=state.step,
                     extra={"kind": kind, "images_seen": state.step * cfg.train.batch_size})

    job.on_main(score)
    return job.finish(f"attndiff SFBD baseline {kind}: {cfg.name}")
