"""`attndiff spd train`: a structure-preserving (or baseline) diffusion model on the shared EDM core.

Methods (all with the same UNet, loss, training loop and sampler):
    none     the plain UNet
    augment  the plain UNet trained on randomly transformed images
    wt       weight tying: every conv kernel constrained to the group (exactly equivariant)
    fa       frame averaging: the group average of the plain UNet, trained and sampled as such
    reg      the plain UNet trained with the equivariance regulariser against its EMA; sampled with FA

"Equal training compute" here means equal optimizer steps and images seen; FA (and Reg's
target) cost more network evaluations per image, which the benchmark reports as wall time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from attndiff import UserError, config
from attndiff.diffusion.edm import EDMConfig, edm_loss
from attndiff.diffusion.job import (LoadedModel, TrainJobConfig, build_net, ema_denoiser, evaluate, load_data,
                                    load_denoiser, model_meta)
from attndiff.diffusion.training import TrainState, train
from attndiff.diffusion.unet import UNet, UNetConfig, count_parameters
from attndiff.metrics.fid import load_samples
from attndiff.report import figures
from attndiff.report.html import fig_tag, table, write_report
from attndiff.run import Run
from attndiff.symmetry import groups
from attndiff.symmetry.averaging import augmented_loss, frame_average, regularised_loss
from attndiff.symmetry.layers import tie_weights
from attndiff.symmetry.metrics import equivariance_error, invariance_score, orientation_shares

METHODS = ("none", "augment", "wt", "fa", "reg")
Method = Literal["none", "augment", "wt", "fa", "reg"]


@dataclasses.dataclass
class SymmetryConfig:
    group: str = "C4"  # trivial, C4, D4, H, V
    method: Method = "wt"
    reg_weight: float = 1.0  # weight of the equivariance penalty (method = reg)
    invariance: bool = True  # score the samples' invariance (|G| Inception passes over the FID samples)
    orientation_shares: bool = False  # toy set: share of samples in each orientation of the training set

    def validate(self):
        groups.get(self.group)
        if self.reg_weight < 0:
            raise UserError(f"spd.reg_weight must be >= 0, got {self.reg_weight}")


@dataclasses.dataclass
class SPDJobConfig(TrainJobConfig):
    name: str = "c4-mnist-cpu"
    spd: SymmetryConfig = dataclasses.field(default_factory=SymmetryConfig)


def build_spd_net(unet: UNetConfig, shape, spd: SymmetryConfig) -> UNet:
    """The UNet of a method: weight-tied for wt, plain otherwise."""
    net = build_net(unet, shape)
    return tie_weights(net, groups.get(spd.group)) if spd.method == "wt" else net


def wrap(denoiser, spd: SymmetryConfig):
    """The denoiser a method samples with: the frame average for fa and reg, the network's own otherwise."""
    return frame_average(denoiser, groups.get(spd.group)) if spd.method in ("fa", "reg") else denoiser


def spd_loss(spd: SymmetryConfig, edm: EDMConfig, target=None):
    """The training loss of a method as train()'s loss_fn (None: the plain EDM loss)."""
    group = groups.get(spd.group)
    if spd.method == "augment":
        return lambda d, x, y, g: augmented_loss(d, group, x, y, cfg=edm, generator=g)
    if spd.method == "fa":
        return lambda d, x, y, g: edm_loss(frame_average(d, group), x, y, cfg=edm, generator=g)
    if spd.method == "reg":
        if target is None:
            raise ValueError("method reg needs the target (EMA) denoiser")
        return lambda d, x, y, g: regularised_loss(d, target, group, x, y, cfg=edm, weight=spd.reg_weight,
                                                   generator=g)
    return None


def spd_config_of(meta: dict) -> SymmetryConfig:
    return config.from_dict(SymmetryConfig, meta["config"].get("spd", {"group": "trivial", "method": "none"}), "spd")


def load_model(path: str | Path, *, device: str = "cpu", precision: str = "auto") -> LoadedModel:
    """Any attndiff checkpoint as a denoiser: structure-preserving ones with their tied weights or
    frame averaging, plain ones as they are."""
    loaded = load_denoiser(path, device=device, precision=precision,
                           build=lambda unet, shape, meta: build_spd_net(unet, shape, spd_config_of(meta)))
    return dataclasses.replace(loaded, denoiser=wrap(loaded.denoiser, spd_config_of(loaded.meta)))


def _logged(run: Run, tag: str, step: int) -> dict | None:
    return next((r for r in run.metrics() if r.get("tag") == tag and r.get("step") == step), None)


def symmetry_metrics(cfg: SPDJobConfig, denoiser, data, run: Run, step: int) -> dict:
    """Equivariance error of the denoiser, invariance score and orientation shares of the samples."""
    s, group = cfg.spd, groups.get(cfg.spd.group)
    probe = data.images[:16].to(cfg.device)
    labels = data.labels[:16].to(cfg.device) if cfg.unet.num_classes else None
    record = {"tag": "spd-symmetry", "step": step, "method": s.method, "group": group.name,
              "equivariance_error": equivariance_error(denoiser, probe, group, class_labels=labels)}
    samples = load_samples(run.samples / "spd-samples.npz")
    if s.invariance and cfg.fid.n:
        record["invariance"] = invariance_score(samples[:cfg.fid.n], group)
    if s.orientation_shares:
        record["shares"] = orientation_shares(samples, data.images, group)
    tqdm.write("symmetry: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)))
    run.log(record)
    return record


def run_spd(cfg: SPDJobConfig) -> Path:
    s = cfg.spd
    data = load_data(cfg.data)
    run = Run(cfg.run_dir)
    run.write_config(config.dumps_toml(config.to_dict(cfg)))
    torch.manual_seed(cfg.train.seed)
    net = build_spd_net(cfg.unet, data.shape, s).to(cfg.device)
    plain = count_parameters(build_net(cfg.unet, data.shape))
    params = count_parameters(net)
    tqdm.write(f"{cfg.name}: {len(data)} images {data.shape} from {data.name}; method {s.method}, group {s.group}; "
               f"UNet {params / 1e6:.3f}M parameters (plain {plain / 1e6:.3f}M); run folder {run.path}")
    state = TrainState(net, cfg.train)
    labels = data.labels if cfg.unet.num_classes else None
    loss_fn = spd_loss(s, cfg.edm, target=ema_denoiser(state.ema, cfg))
    train(state, data.images, cfg.train, edm=cfg.edm, run=run, tag="spd", labels=labels, loss_fn=loss_fn,
          meta=model_meta(cfg, data.shape), device=cfg.device, desc=f"training ({s.method}, {s.group})")
    denoiser = wrap(ema_denoiser(state.ema, cfg), s)
    if _logged(run, "spd-eval", state.step) is None or not (run.samples / "spd-samples.npz").exists():
        evaluate(denoiser, cfg, data.shape, run, tag="spd", step=state.step, fid_dataset=cfg.data.name,
                 extra={"method": s.method, "group": s.group, "parameters": params, "plain_parameters": plain})
    if _logged(run, "spd-symmetry", state.step) is None:
        symmetry_metrics(cfg, denoiser, data, run, state.step)
    report = write_report(run.path, title=f"attndiff spd: {cfg.name} ({s.method}, {s.group})",
                          extra_sections=spd_sections(run))
    tqdm.write(f"report: {report}")
    return run.path


def spd_sections(run: Run) -> list[str]:
    records = [r for r in run.metrics() if r.get("tag") == "spd-symmetry"]
    if not records:
        return []
    last = records[-1]
    parts = ["<h2>Symmetry</h2>", table([last], [
        ("method", "method", "s"), ("group", "group", "s"),
        ("equivariance_error", "equivariance error (relative RMS)", ".2e"),
        ("invariance", "invariance score (mean FID to g(samples))", ".2f")])]
    if last.get("shares"):
        fig = figures.bars(last["shares"], title="share of samples per orientation of the training set",
                           reference=1 / len(last["shares"]))
        parts.append(fig_tag(fig, "orientation shares"))
    return parts
