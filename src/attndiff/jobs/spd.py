"""`attndiff spd train`: one structure-preserving (or baseline) diffusion model, its samples, FID,
equivariance error, invariance score and report; `attndiff spd denoise`: orientation-free
denoising of image files. The methods are the recipes of `attndiff.symmetry.recipes`.

"Equal training compute" here means equal optimizer steps and images seen; FA (and Reg's
target) cost more network evaluations per image, which the benchmark reports as time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from attndiff import UserError, progress, seeding
from attndiff.data.images import read_images, to_unit_range
from attndiff.diffusion import model
from attndiff.diffusion.sampling import denoise
from attndiff.diffusion.training import TrainState, train
from attndiff.diffusion.unet import count_parameters
from attndiff.fsutil import write_text
from attndiff.jobs.train import TrainJobConfig, evaluate, load_data, load_model, model_meta, start
from attndiff.metrics.fid import load_samples
from attndiff.report import figures
from attndiff.report.figures import save_grid
from attndiff.report.html import fig_tag, table
from attndiff.run import Run
from attndiff.symmetry.denoise import equivariant_denoiser
from attndiff.symmetry.metrics import equivariance_error, invariance_score, orientation_shares
from attndiff.symmetry.recipes import SymmetryConfig

SAMPLES, SYMMETRY = "spd", "spd-symmetry"
EVAL = f"{SAMPLES}-eval"


@dataclasses.dataclass
class SymmetryMetricsConfig:
    invariance: bool = True  # score the samples' invariance (|G| Inception passes over the FID samples)
    orientation_shares: bool = False  # toy set: share of samples in each orientation of the training set


@dataclasses.dataclass
class SPDJobConfig(TrainJobConfig):
    name: str = "c4-mnist-cpu"
    symmetry: SymmetryConfig = dataclasses.field(default_factory=lambda: SymmetryConfig("C4", "wt"))
    symmetry_metrics: SymmetryMetricsConfig = dataclasses.field(default_factory=SymmetryMetricsConfig)


def symmetry_metrics(cfg: SPDJobConfig, denoiser, group, data, run: Run, step: int) -> dict:
    """Equivariance error of the denoiser, invariance score and orientation shares of the samples."""
    m = cfg.symmetry_metrics
    probe = data.images[:16].to(cfg.device)
    labels = data.labels[:16].to(cfg.device) if cfg.unet.num_classes else None
    record = {"tag": SYMMETRY, "step": step, "method": cfg.symmetry.method, "group": group.name,
              "equivariance_error": equivariance_error(denoiser, probe, group, class_labels=labels)}
    samples = load_samples(run.samples / f"{SAMPLES}-samples.npz")
    if m.invariance and cfg.fid.n:
        record["invariance"] = invariance_score(samples[:cfg.fid.n], group)
    if m.orientation_shares:
        record["shares"] = orientation_shares(samples, data.images, group)
    progress.say("symmetry: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)))
    run.log(record)
    return record


def run_spd(cfg: SPDJobConfig) -> Path:
    data = load_data(cfg.data)
    job, cfg, spec = start(cfg, data.shape)
    s, group = cfg.symmetry, spec.options.group
    net = spec.new_net()
    plain, params = count_parameters(model.network(cfg.unet, data.shape)), count_parameters(net)
    progress.say(f"{cfg.name}: {len(data)} images {data.shape} from {data.name}; method {s.method}, "
                 f"group {group.name}; UNet {params / 1e6:.3f}M parameters (plain {plain / 1e6:.3f}M); "
                 f"run folder {job.path}")
    state = TrainState(net, cfg.train)
    train(state, data.images, cfg.train, edm=cfg.edm, run=job.run, tag="spd",
          labels=data.labels if cfg.unet.num_classes else None, loss_fn=spec.loss(state.ema),
          meta=model_meta(cfg, data.shape), device=cfg.device, desc=f"training ({s.method}, {group.name})")

    def score():  # rank 0 alone; each part once, also across resumes
        denoiser = spec.sampling_denoiser(state.ema)
        if not job.run.done(EVAL, step=state.step) or not (job.run.samples / f"{SAMPLES}-samples.npz").exists():
            evaluate(denoiser, spec, job.run, cfg.sample, cfg.fid, fid_dataset=cfg.fid_reference, tag=SAMPLES,
                     step=state.step, extra={"method": s.method, "group": s.group, "parameters": params,
                                             "plain_parameters": plain})
        if not job.run.done(SYMMETRY, step=state.step):
            symmetry_metrics(cfg, denoiser, group, data, job.run, state.step)

    job.on_main(score)
    return job.finish(f"attndiff spd: {cfg.name} ({s.method}, {s.group})", lambda: spd_sections(job.run))


def spd_sections(run: Run) -> list[str]:
    last = run.last(SYMMETRY)
    if last is None:
        return []
    parts = ["<h2>Symmetry</h2>", table([last], [
        ("method", "method", "s"), ("group", "group", "s"),
        ("equivariance_error", "equivariance error (relative RMS)", ".2e"),
        ("invariance", "invariance score (mean FID to g(samples))", ".2f")])]
    if last.get("shares"):
        fig = figures.bars(last["shares"], title="share of samples per orientation of the training set",
                           reference=1 / len(last["shares"]))
        parts.append(fig_tag(fig, "orientation shares"))
    return parts


def fit_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    return x.mean(1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)


def run_denoise(paths: list[str], model_path: str, *, sigma: float, out: str, group: str | None = None,
                stochastic: bool = True, scheme: str = "ancestral-2m", add_noise: bool = False, steps: int = 15,
                seed: int = 0,
                device: str = "cpu", precision: str = "auto") -> Path:
    """Denoise image files; writes <stem>-denoised.png for each and comparison.png (input | output rows)."""
    if sigma <= 0 or steps < 1 or seed < 0:
        raise UserError("--sigma must be > 0, --steps >= 1 and --seed >= 0")
    loaded = load_model(model_path, device=device, precision=precision)
    c, h, w = loaded.image_shape
    files = [Path(p) for p in paths]
    x = fit_channels(to_unit_range(read_images(files)), c)
    if tuple(x.shape[-2:]) != (h, w):
        raise UserError(f"the images are {x.shape[-1]}x{x.shape[-2]}, the model works on {w}x{h}")
    if add_noise:  # SDEdit-style: noise a clean image to level sigma first
        x = x + sigma * torch.stack([torch.randn(x.shape[1:], generator=seeding.generator(seed, "add-noise", i))
                                     for i in range(len(x))])
    denoiser, group_name = equivariant_denoiser(loaded.denoiser, equivariant_under=loaded.equivariant_under,
                                                group_name=group)
    seeds = [seeding.derive(seed, "denoise", i) for i in range(len(x))]
    result = denoise(denoiser, x, sigma, steps=steps, stochastic=stochastic, scheme=scheme, seeds=seeds,
                     edm=loaded.spec.edm, device=device, progress="denoising")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for f, img in zip(files, result):
        save_grid(img[None], folder / f"{f.stem}-denoised.png", nrow=1, scale=1, pad=0)
    save_grid(torch.cat([x.clamp(-1, 1), result]), folder / "comparison.png", nrow=len(x))
    solver = f"sde ({scheme})" if stochastic else "ode (heun)"
    write_text(folder / "denoise.txt", f"model {model_path}\ngroup {group_name}\nsigma {sigma}\nsolver {solver}\n"
               f"steps {steps}\nseed {seed}\nadded noise {add_noise}\n")
    progress.say(f"denoised {len(x)} image(s) with group {group_name} -> {folder}")
    return folder
