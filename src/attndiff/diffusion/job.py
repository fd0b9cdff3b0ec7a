"""`attndiff train`: train an EDM model on an image dataset, then sample, score FID and report."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from attndiff import UserError, checkpoint, config, distributed
from attndiff.data import images as image_data
from attndiff.diffusion.edm import EDMConfig, Precond
from attndiff.diffusion.sampling import edm_sigmas, generate
from attndiff.diffusion.training import TrainConfig, TrainState, autocast_dtype, train
from attndiff.diffusion.unet import UNet, UNetConfig, count_parameters
from attndiff.fsutil import write_npz
from attndiff.metrics import fid as fid_metric
from attndiff.report.figures import save_grid
from attndiff.report.html import write_report
from attndiff.run import Run


@dataclasses.dataclass
class DataConfig:
    name: str = "mnist"  # mnist, fashion-mnist, emoji, digits, folder:PATH, npz:PATH
    split: str = "train"
    limit: int = 0  # > 0: a seeded subset of this many images
    resolution: int = 0  # > 0: resize to resolution x resolution
    seed: int = 0

    def validate(self):
        if self.limit < 0 or self.resolution < 0:
            raise UserError("data.limit and data.resolution must be >= 0")


@dataclasses.dataclass
class SampleConfig:
    steps: int = 18  # EDM grid points (Heun: 2 * steps - 1 network evaluations)
    solver: Literal["heun", "sde"] = "heun"
    churn: float = 0.0
    grid: int = 64  # images in the sample grid
    batch_size: int = 250

    def validate(self):
        if self.steps < 1 or self.grid < 1 or self.batch_size < 1 or self.churn < 0:
            raise UserError("sample: steps, grid and batch_size must be >= 1 and churn >= 0")


@dataclasses.dataclass
class FIDConfig:
    n: int = 1000  # samples (and reference images) for FID; 0 = skip FID
    split: str = "test"  # reference split of the training dataset

    def validate(self):
        if self.n < 0 or self.n == 1:
            raise UserError(f"fid.n must be 0 (off) or >= 2, got {self.n}")


@dataclasses.dataclass
class TrainJobConfig:
    name: str = "mnist-cpu"
    out: str = ""  # run folder (default runs/<name>)
    device: str = "cpu"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    edm: EDMConfig = dataclasses.field(default_factory=EDMConfig)
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    sample: SampleConfig = dataclasses.field(default_factory=SampleConfig)
    fid: FIDConfig = dataclasses.field(default_factory=FIDConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out or f"runs/{self.name}")


def on_this_rank(cfg):
    """The job config with this rank's device (under torchrun, 'cuda' is the rank's own GPU)."""
    return dataclasses.replace(cfg, device=distributed.device(cfg.device))


def load_data(cfg: DataConfig) -> image_data.ImageDataset:
    data = image_data.load(cfg.name, cfg.split, resolution=cfg.resolution or None)
    return data.subset(cfg.limit, cfg.seed) if 0 < cfg.limit < len(data) else data


def build_net(unet: UNetConfig, shape) -> UNet:
    c, h, w = shape
    if h != w:
        raise UserError(f"images must be square, got {h}x{w}")
    return UNet(unet, c, h)


def model_meta(cfg: TrainJobConfig, shape) -> dict:
    """What a checkpoint needs to rebuild its model: the config and the image shape."""
    return {"config": config.to_dict(cfg), "image_shape": list(shape)}


@dataclasses.dataclass
class LoadedModel:
    denoiser: Precond
    edm: EDMConfig
    unet: UNetConfig
    image_shape: tuple[int, int, int]
    meta: dict


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a checkpoint file, or of a run folder's newest checkpoint (any phase)."""
    path = Path(path)
    if not path.is_dir():
        return checkpoint.load(path)
    found = checkpoint.load_latest(path / "checkpoints", None)
    if found is None:
        raise UserError(f"no checkpoint found in {path / 'checkpoints'}")
    return found[0], found[1]


def load_denoiser(path: str | Path, *, use_ema: bool = True, device: str = "cpu", precision: str = "auto",
                  build: Callable[[UNetConfig, tuple, dict], nn.Module] | None = None) -> LoadedModel:
    """Rebuild the denoiser from a checkpoint file or a run folder.

    build(unet_config, image_shape, metadata) makes the network the weights belong to
    (default: the plain UNet); the structure-preserving models pass their own.
    """
    tensors, meta = read_checkpoint(path)
    edm = config.from_dict(EDMConfig, meta["config"].get("edm", {}), "edm")
    unet = config.from_dict(UNetConfig, meta["config"].get("unet", {}), "unet")
    shape = tuple(meta["image_shape"])
    net = build(unet, shape, meta) if build else build_net(unet, shape)
    prefix = "ema." if use_ema else "net."
    net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    denoiser = Precond(net.to(device).eval(), edm.sigma_data, autocast_dtype(precision, device))
    return LoadedModel(denoiser, edm, unet, shape, meta)


def ema_denoiser(ema, cfg: TrainJobConfig) -> Precond:
    """The EMA network as a denoiser, in the job's precision on the job's device."""
    return Precond(ema, cfg.edm.sigma_data, autocast_dtype(cfg.train.precision, cfg.device))


def evaluate(denoiser, cfg: TrainJobConfig, shape, run: Run, *, tag: str, step: int, fid_dataset: str,
             extra: dict | None = None) -> dict:
    """Sample grid, then FID on cfg.fid.n samples; logs and returns the metrics (plus `extra` fields).

    All max(grid, fid.n) samples are kept in samples/<tag>-samples.npz (uint8).

    `cfg` needs the sections edm, sample, fid, unet and device (any job config that has them).
    """
    e, s = cfg.edm, cfg.sample
    sigmas = edm_sigmas(s.steps, e.sigma_min, e.sigma_max, e.rho)
    kwargs = dict(solver=s.solver, churn=s.churn, batch_size=s.batch_size, device=cfg.device)

    def labels(n):  # class-conditional models: classes in turn
        return torch.arange(n) % cfg.unet.num_classes if cfg.unet.num_classes else None

    # sample i always has seed i, so the grid is the first images of the FID set: sample once
    n = max(s.grid, cfg.fid.n)
    samples = generate(denoiser, n, shape, sigmas, class_labels=labels(n), **kwargs)
    save_grid(samples[:s.grid], run.samples / f"{tag}-{step:08d}.png")
    record = {"tag": f"{tag}-eval", "step": step, **(extra or {})}
    write_npz(run.samples / f"{tag}-samples.npz", images=image_data.to_uint8(samples))
    if cfg.fid.n:
        record.update(fid_metric.fid(samples[:cfg.fid.n], fid_dataset, cfg.fid.split, cfg.fid.n))
        tqdm.write(f"{tag} step {step}: FID {record['fid']:.2f} (N={cfg.fid.n}), KID {record['kid']:.4f}")
    run.log(record)
    return record


def run_train(cfg: TrainJobConfig) -> Path:
    data = load_data(cfg.data)
    run = Run(cfg.run_dir)
    run.write_config(config.dumps_toml(config.to_dict(cfg)))
    cfg = on_this_rank(cfg)
    torch.manual_seed(cfg.train.seed)
    net = build_net(cfg.unet, data.shape).to(cfg.device)
    distributed.say(f"{cfg.name}: {len(data)} images {data.shape} from {data.name}; "
                    f"UNet {count_parameters(net) / 1e6:.2f}M parameters; run folder {run.path}")
    labels = data.labels if cfg.unet.num_classes else None
    state = TrainState(net, cfg.train)
    train(state, data.images, cfg.train, edm=cfg.edm, run=run, labels=labels,
          meta=model_meta(cfg, data.shape), device=cfg.device)
    if not distributed.is_main():  # rank 0 evaluates and reports
        return run.path
    evaluate(ema_denoiser(state.ema, cfg), cfg, data.shape, run, tag="train", step=state.step,
             fid_dataset=cfg.data.name)
    report = write_report(run.path, title=f"attndiff train: {cfg.name}")
    tqdm.write(f"report: {report}")
    return run.path
