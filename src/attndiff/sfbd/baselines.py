"""SFBD's baselines, each trained for the same number of steps (images seen) as the SFBD run:

- clean-only: the clean part alone (the pretrained model trained on);
- noisy-only: the noisy images as if they were clean;
- ambient: noisy images used only at noise levels >= sigma_zeta, through the ambient loss
  below, plus the clean images at all levels (the "consistent diffusion meets Tweedie" family);
- oracle: every training image clean (the originals of the noisy part are used: an upper bound).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from attndiff import UserError, config, distributed
from attndiff.diffusion.edm import EDMConfig, append_dims, randn
from attndiff.diffusion.job import evaluate, model_meta, on_this_rank
from attndiff.diffusion.training import TrainState, train
from attndiff.report.html import write_report
from attndiff.run import Run
from attndiff.sfbd.loop import SFBDJobConfig, load_split, loss_of, model_denoiser, new_net

KINDS = ("clean-only", "noisy-only", "ambient", "oracle")


def ambient_loss(denoiser, x: torch.Tensor, is_noisy: torch.Tensor, *, cfg: EDMConfig, sigma_zeta: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample EDM loss where noisy samples (already at sigma_zeta) are trained only at sigma >= sigma_zeta.

    A noisy y = x0 + sigma_zeta e is taken up to x_t = y + sqrt(sigma^2 - sigma_zeta^2) n. Since
    E[y | x_t] = b x_t + a E[x0 | x_t] with b = sigma_zeta^2 / sigma^2 and a = 1 - b, regressing
    a D(x_t) + b x_t onto y has the clean denoiser E[x0 | x_t] as its minimiser. Clean samples
    have a = 1, b = 0: the ordinary EDM loss. sigma for noisy samples is the EDM log-normal
    truncated below at sigma_zeta (inverse-CDF sampling).
    """
    n = x.shape[0]
    normal = torch.distributions.Normal(cfg.p_mean, cfg.p_std)
    floor = normal.cdf(torch.tensor(math.log(sigma_zeta)))
    u = torch.rand(n, generator=generator).to(x.device)
    ln_clean = randn(n, generator, x.device) * cfg.p_std + cfg.p_mean
    ln_noisy = normal.icdf((floor + u * (1 - floor)).clamp(max=1 - 1e-7))
    noisy = is_noisy.to(x.device).bool()
    sigma = torch.where(noisy, ln_noisy, ln_clean).exp()
    sz2 = torch.where(noisy, torch.full_like(sigma, sigma_zeta**2), torch.zeros_like(sigma))
    x_t = x + append_dims((sigma**2 - sz2).clamp_min(0).sqrt(), x.ndim) * randn(x.shape, generator, x.device)
    b = append_dims(sz2 / sigma**2, x.ndim)
    prediction = (1 - b) * denoiser(x_t, sigma) + b * x_t
    weight = (sigma**2 + cfg.sigma_data**2) / (sigma * cfg.sigma_data) ** 2
    return weight * (prediction - x).square().flatten(1).mean(1)


def run_baseline(cfg: SFBDJobConfig, kind: str) -> Path:
    if kind not in KINDS:
        raise UserError(f"unknown baseline kind {kind!r} (known: {', '.join(KINDS)})")
    if kind == "ambient" and cfg.symmetry.method not in ("none", "wt"):
        raise UserError("the ambient baseline supports symmetry.method none or wt (its loss is its own)")
    split = load_split(cfg)
    flags, loss_fn = None, None
    if kind == "clean-only":
        images = split.clean.images
    elif kind == "noisy-only":
        images = split.noisy
    elif kind == "oracle":
        images = torch.cat([split.clean.images, split.originals.images])
    else:
        images = torch.cat([split.clean.images, split.noisy])
        flags = torch.cat([torch.zeros(len(split.clean)), torch.ones(len(split.noisy))])

        def loss_fn(denoiser, x, is_noisy, generator):
            return ambient_loss(denoiser, x, is_noisy, cfg=cfg.edm, sigma_zeta=cfg.sfbd.sigma_zeta,
                                generator=generator)

    run = Run(cfg.run_dir.with_name(f"{cfg.run_dir.name}-{kind}"))
    run.write_config(config.dumps_toml({"baseline": kind, **config.to_dict(cfg)}))
    train_cfg = dataclasses.replace(cfg.train, steps=cfg.total_steps)
    cfg = on_this_rank(cfg)
    torch.manual_seed(cfg.train.seed)
    net = new_net(cfg, split.clean.shape)
    distributed.say(f"baseline {kind}: {len(images)} training images, {train_cfg.steps} steps (as the SFBD run)")
    state = TrainState(net, train_cfg)
    train(state, images, train_cfg, edm=cfg.edm, run=run, tag=kind, labels=flags,
          loss_fn=loss_fn or loss_of(cfg, state), meta=model_meta(cfg, split.clean.shape), device=cfg.device,
          desc=kind)
    if not distributed.is_main():  # rank 0 evaluates and reports
        return run.path
    done = [r for r in run.metrics() if r.get("tag") == f"{kind}-eval"]
    if not done:
        evaluate(model_denoiser(state.ema, cfg), cfg, split.clean.shape, run, tag=kind, step=state.step,
                 fid_dataset=cfg.data.name, extra={"kind": kind, "images_seen": state.step * cfg.train.batch_size})
    report = write_report(run.path, title=f"attndiff SFBD baseline {kind}: {cfg.name}")
    print(f"report: {report}")
    return run.path
