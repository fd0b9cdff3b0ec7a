"""`attndiff spd train`: one structure-preserving (or baseline) diffusion model, its samples,
FID, equivariance error, invariance score and report. The methods are in `models`.

"Equal training compute" here means equal optimizer steps and images seen; FA (and Reg's
target) cost more network evaluations per image, which the benchmark reports as time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from tqdm.auto import tqdm

from attndiff import config, distributed
from attndiff.diffusion.job import TrainJobConfig, ema_denoiser, evaluate, load_data, model_meta, on_this_rank
from attndiff.diffusion.job import build_net as plain_net
from attndiff.diffusion.training import TrainState, train
from attndiff.diffusion.unet import count_parameters
from attndiff.metrics.fid import load_samples
from attndiff.report import figures
from attndiff.report.html import fig_tag, table, write_report
from attndiff.run import Run
from attndiff.symmetry import groups
from attndiff.symmetry.metrics import equivariance_error, invariance_score, orientation_shares
from attndiff.symmetry.models import SymmetryConfig, build_net, sampling_denoiser, training_loss


@dataclasses.dataclass
class SymmetryMetricsConfig:
    invariance: bool = True  # score the samples' invariance (|G| Inception passes over the FID samples)
    orientation_shares: bool = False  # toy set: share of samples in each orientation of the training set


@dataclasses.dataclass
class SPDJobConfig(TrainJobConfig):
    name: str = "c4-mnist-cpu"
    symmetry: SymmetryConfig = dataclasses.field(default_factory=lambda: SymmetryConfig("C4", "wt"))
    symmetry_metrics: SymmetryMetricsConfig = dataclasses.field(default_factory=SymmetryMetricsConfig)


def _logged(run: Run, tag: str, step: int) -> dict | None:
    return next((r for r in run.metrics() if r.get("tag") == tag and r.get("step") == step), None)


def symmetry_metrics(cfg: SPDJobConfig, denoiser, data, run: Run, step: int) -> dict:
    """Equivariance error of the denoiser, invariance score and orientation shares of the samples."""
    s, m, group = cfg.symmetry, cfg.symmetry_metrics, groups.get(cfg.symmetry.group)
    probe = data.images[:16].to(cfg.device)
    labels = data.labels[:16].to(cfg.device) if cfg.unet.num_classes else None
    record = {"tag": "spd-symmetry", "step": step, "method": s.method, "group": group.name,
              "equivariance_error": equivariance_error(denoiser, probe, group, class_labels=labels)}
    samples = load_samples(run.samples / "spd-samples.npz")
    if m.invariance and cfg.fid.n:
        record["invariance"] = invariance_score(samples[:cfg.fid.n], group)
    if m.orientation_shares:
        record["shares"] = orientation_shares(samples, data.images, group)
    tqdm.write("symmetry: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)))
    run.log(record)
    return record


def run_spd(cfg: SPDJobConfig) -> Path:
    s = cfg.symmetry
    data = load_data(cfg.data)
    run = Run(cfg.run_dir)
    run.write_config(config.dumps_toml(config.to_dict(cfg)))
    cfg = on_this_rank(cfg)
    torch.manual_seed(cfg.train.seed)
    net = build_net(cfg.unet, data.shape, s).to(cfg.device)
    plain = count_parameters(plain_net(cfg.unet, data.shape))
    params = count_parameters(net)
    distributed.say(f"{cfg.name}: {len(data)} images {data.shape} from {data.name}; method {s.method}, "
                    f"group {s.group}; UNet {params / 1e6:.3f}M parameters (plain {plain / 1e6:.3f}M); "
                    f"run folder {run.path}")
    state = TrainState(net, cfg.train)
    labels = data.labels if cfg.unet.num_classes else None
    loss_fn = training_loss(s, cfg.edm, target=ema_denoiser(state.ema, cfg))
    train(state, data.images, cfg.train, edm=cfg.edm, run=run, tag="spd", labels=labels, loss_fn=loss_fn,
          meta=model_meta(cfg, data.shape), device=cfg.device, desc=f"training ({s.method}, {s.group})")
    if not distributed.is_main():  # rank 0 evaluates and reports
        return run.path
    denoiser = sampling_denoiser(ema_denoiser(state.ema, cfg), s)
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
