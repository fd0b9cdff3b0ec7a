"""`attndiff train`: train an EDM model on an image dataset, then sample, score FID and report.

Also the sections every diffusion job shares ([data], [edm], [unet], [train], [sample], [fid]),
the model of a config (`model_spec`), its evaluation and `load_model` for any checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

import attndiff.symmetry  # noqa: F401  (registers the structure-preserving recipes)
from attndiff import UserError, checkpoint, config, progress
from attndiff.data import images as image_data
from attndiff.diffusion import model
from attndiff.diffusion.edm import EDMConfig
from attndiff.diffusion.model import ModelSpec
from attndiff.diffusion.sampling import edm_sigmas, generate
from attndiff.diffusion.training import TrainConfig, TrainState, train
from attndiff.diffusion.unet import UNetConfig, count_parameters
from attndiff.fsutil import write_npz
from attndiff.jobs.common import Job
from attndiff.jobs.exact import evaluate_exact, is_exact
from attndiff.metrics import fid as fid_metric
from attndiff.report.figures import save_grid
from attndiff.symmetry.recipes import SymmetryConfig, resolve


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
    RENAMED = {"solver": "sample.stochastic (true: the reverse SDE; false: Heun on the ODE)"}

    steps: int = 18  # EDM grid points (Heun: 2 * steps - 1 network evaluations)
    stochastic: bool = False  # true: the reverse SDE; false: Heun on the probability-flow ODE
    churn: float = 0.0  # EDM's S_churn for the deterministic solver (> 0 adds noise at each step)
    grid: int = 64  # images in the sample grid
    batch_size: int = 250
    backend: str = "auto"  # the sampling network: onnx (ONNX Runtime: fp32 plain UNet on the CPU), torch, or auto

    def validate(self):
        config.check_choice("sample.backend", self.backend, model.BACKENDS)
        if self.steps < 1 or self.grid < 1 or self.batch_size < 1 or self.churn < 0:
            raise UserError("sample: steps, grid and batch_size must be >= 1 and churn >= 0")
        if self.stochastic and self.churn:
            raise UserError("sample.churn applies to the deterministic solver; set it to 0 with sample.stochastic")


@dataclasses.dataclass
class FIDConfig:
    n: int = 1000  # samples (and reference images) for FID; 0 = skip FID
    split: str = "test"  # reference split ...
    ref: str = ""  # ... of this dataset (default: the training data's; e.g. folder:PATH of held-out images)
    precision: str = "fp32"  # Inception features: fp32 (machine-independent) or bf16 (faster on AMX CPUs)

    def validate(self):
        if self.n < 0 or self.n == 1:
            raise UserError(f"fid.n must be 0 (off) or >= 2, got {self.n}")
        config.check_choice("fid.precision", self.precision, fid_metric.PRECISIONS)


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
    def fid_reference(self) -> str:
        """The dataset FID compares with: fid.ref, or the training data's."""
        return self.fid.ref or self.data.name

    @property
    def run_dir(self) -> Path:
        return Path(self.out or f"runs/{self.name}")


def load_data(cfg: DataConfig) -> image_data.ImageDataset:
    data = image_data.load(cfg.name, cfg.split, resolution=cfg.resolution or None)
    return data.subset(cfg.limit, cfg.seed) if 0 < cfg.limit < len(data) else data


def model_spec(cfg: TrainJobConfig, shape) -> ModelSpec:
    """The model of a job config: its [symmetry] recipe (plain without one), sizes, precision, device."""
    sym = getattr(cfg, "symmetry", SymmetryConfig())
    return ModelSpec(model.recipe(sym.method), resolve(sym), cfg.unet, cfg.edm, tuple(shape),
                     cfg.train.precision, cfg.device, cfg.sample.backend)


def start(cfg: TrainJobConfig, shape, **job_options) -> tuple[Job, TrainJobConfig, ModelSpec]:
    """A diffusion job: its Job (network initialisation seeded by train.seed), its config on this
    rank and the model spec of that config."""
    job = Job(cfg, seed=cfg.train.seed, **job_options)
    return job, job.cfg, model_spec(job.cfg, shape)


def model_meta(cfg, shape) -> dict:
    """What a checkpoint needs to rebuild its model: the config and the image shape."""
    return {"config": config.to_dict(cfg), "image_shape": list(shape)}


def evaluate(denoiser, spec: ModelSpec, run, sample: SampleConfig, fid: FIDConfig, *, fid_dataset: str, tag: str,
             step: int, extra: dict | None = None) -> dict:
    """Sample grid, then FID on fid.n samples; logs and returns the metrics (plus `extra` fields).

    All max(grid, fid.n) samples are kept in samples/<tag>-samples.npz (uint8); the record's tag
    is `<tag>-eval`. On the exact testbed's mixtures the samples are scored against the truth
    instead (jobs.exact).
    """
    e = spec.edm
    sigmas = edm_sigmas(sample.steps, e.sigma_min, e.sigma_max, e.rho)
    # sample i always has seed i, so the grid is the first images of the FID set: sample once
    n = max(sample.grid, fid.n)
    classes = spec.unet.num_classes
    labels = torch.arange(n) % classes if classes else None  # class-conditional models: classes in turn
    samples = generate(denoiser, n, spec.shape, sigmas, class_labels=labels, stochastic=sample.stochastic,
                       churn=sample.churn, batch_size=sample.batch_size, device=spec.device)
    if is_exact(fid_dataset):  # data with a known density: distances to the truth instead of FID
        return evaluate_exact(samples, fid_dataset, run, tag=tag, step=step, extra=extra)
    save_grid(samples[:sample.grid], run.samples / f"{tag}-{step:08d}.png")
    record = {"tag": f"{tag}-eval", "step": step, **(extra or {})}
    write_npz(run.samples / f"{tag}-samples.npz", images=image_data.to_uint8(samples))
    if fid.n:
        record.update(fid_metric.fid(samples[:fid.n], fid_dataset, fid.split, fid.n, precision=fid.precision),
                      fid_precision=fid.precision)
        progress.say(f"{tag} step {step}: FID {record['fid']:.2f} (N={fid.n}), KID {record['kid']:.4f}")
    run.log(record)
    return record


def run_train(cfg: TrainJobConfig) -> Path:
    data = load_data(cfg.data)
    job, cfg, spec = start(cfg, data.shape)
    net = spec.new_net()
    progress.say(f"{cfg.name}: {len(data)} images {data.shape} from {data.name}; "
                 f"network {count_parameters(net) / 1e6:.2f}M parameters; run folder {job.path}")
    state = TrainState(net, cfg.train)
    train(state, data.images, cfg.train, edm=cfg.edm, run=job.run, labels=data.labels if cfg.unet.num_classes else None,
          meta=model_meta(cfg, data.shape), device=cfg.device)
    job.on_main(evaluate, spec.denoiser(state.ema), spec, job.run, cfg.sample, cfg.fid,
                fid_dataset=cfg.fid_reference, tag="train", step=state.step)
    return job.finish(f"attndiff train: {cfg.name}")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a checkpoint file, or of a run folder's newest checkpoint (any phase)."""
    path = Path(path)
    if not path.is_dir():
        return checkpoint.load(path)
    found = checkpoint.load_latest(path / "checkpoints", None)
    if found is None:
        raise UserError(f"no checkpoint found in {path / 'checkpoints'}")
    return found[0], found[1]


@dataclasses.dataclass
class LoadedModel:
    denoiser: object  # the sampling denoiser (frame-averaged where the recipe samples so)
    spec: ModelSpec
    meta: dict

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.spec.shape

    @property
    def equivariant_under(self):
        """The group the denoiser is exactly equivariant under, or None."""
        return self.spec.options.group if self.spec.recipe.equivariant else None

    def sample(self, seeds: range, *, steps: int, stochastic: bool = False, churn: float = 0.0, batch_size: int = 256,
               progress: bool | str = True) -> torch.Tensor:
        """One sample per seed on the EDM grid of `steps` points (class-conditional models: classes in turn)."""
        edm, classes, n = self.spec.edm, self.spec.unet.num_classes, len(seeds)
        return generate(self.denoiser, n, self.image_shape, edm_sigmas(steps, edm.sigma_min, edm.sigma_max, edm.rho),
                        seeds=seeds, stochastic=stochastic, churn=churn, batch_size=batch_size,
                        device=self.spec.device, class_labels=torch.arange(n) % classes if classes else None,
                        progress=progress)


def load_model(path: str | Path, *, use_ema: bool = True, device: str = "cpu", precision: str = "auto",
               backend: str = "auto") -> LoadedModel:
    """Any attndiff diffusion checkpoint (file or run folder) as the denoiser it samples with
    (`backend`: see ModelSpec.inference_net)."""
    tensors, meta = read_checkpoint(path)
    saved = meta["config"]
    sym = config.from_dict(SymmetryConfig, saved.get("symmetry", {}), "symmetry")
    unet = config.from_dict(UNetConfig, saved.get("unet", {}), "unet")
    edm = config.from_dict(EDMConfig, saved.get("edm", {}), "edm")
    spec = ModelSpec(model.recipe(sym.method), resolve(sym), unet, edm, tuple(meta["image_shape"]), precision, device,
                     backend)
    net = model.load_weights(spec.new_net(), tensors, use_ema=use_ema).eval()
    return LoadedModel(spec.sampling_denoiser(net), spec, meta)
