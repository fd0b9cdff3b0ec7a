"""`attndiff sfbd run`: SFBD (Algorithm 1 of the paper) on the shared EDM core.

    pretrain D on the clean part
    for k = 1..K:
        backward: E_k = reverse process of the current EMA model from sigma_zeta to 0, for every noisy y
        forward:  fine-tune from the previous EMA weights (fresh optimizer) on clean + E_k (or E_k only)

Every phase is resumable: training phases resume from their checkpoints, the denoised set
is written in chunks (each image's noise from the stream (noise_seed, "backward", k, index), so a
resumed chunk equals the one an uninterrupted run would write), and finished evaluations are
read back from metrics.jsonl. Rerunning the same command continues where a killed run stopped.
The model is whatever recipe the config's [symmetry] section names (the plain UNet by default).
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from attndiff import UserError, checkpoint, config, distributed, progress, seeding
from attndiff.diffusion.model import ModelSpec
from attndiff.diffusion.sampling import GRIDS, SDE_SCHEMES
from attndiff.diffusion.training import TrainState, train
from attndiff.diffusion.unet import count_parameters
from attndiff.fsutil import write_npz
from attndiff.jobs.common import Job
from attndiff.jobs.sfbd_data import own_split
from attndiff.jobs.sfbd_eval import EVAL, Evaluator, sfbd_sections
from attndiff.jobs.train import TrainJobConfig, load_data, model_meta, start
from attndiff.run import Run
from attndiff.sfbd.backward import backward
from attndiff.sfbd.noisy import NoisySplit, make_noisy_split
from attndiff.sfbd.stopping import should_stop
from attndiff.symmetry.recipes import SymmetryConfig

PRETRAIN, BACKWARD = "pretrain", "backward"


def forward_tag(k: int) -> str:
    return f"round{k}"


@dataclasses.dataclass
class SFBDConfig:
    clean_fraction: float = 0.04  # share of the training images that stay clean
    noisy_data: str = ""  # your own noisy set (a float npz, see `sfbd noise`): no split is made, no originals
    clean_data: str = ""  # ... and your clean images (any dataset name; [data]'s limit and resolution apply)
    sigma_zeta: float = 0.59  # noise std of the noisy part, on the [-1, 1] pixel scale
    noise_seed: int = 0  # seeds the clean/noisy split, the frozen noise and the backward noise
    rounds: int = 3  # K backward/forward rounds after pretraining
    forward_steps: int = 300  # fine-tuning steps per round (batch size and lr from [train])
    forward_warmup_steps: int = 20
    forward_data: Literal["clean+denoised", "denoised"] = "clean+denoised"  # released code / paper pseudocode
    backward_steps: int = 15  # points of the backward grid (below: from sigma_zeta down; the authors: 40, truncated)
    backward_grid: str = "below"  # below (every step under sigma_zeta) or truncated (the authors' EDM grid)
    backward_scheme: str = "ancestral-2m"  # the SDE scheme: ancestral-2m, ancestral (first order) or heun
    stochastic: bool = True  # reverse SDE (the paper); false: probability-flow ODE with Heun (released code)
    backward_batch: int = 250
    chunk: int = 1000  # images per incrementally written file of the denoised set
    keep_denoised: bool = False  # keep every round's denoised set (to count copies of it), not only the newest
    denoised_fid_n: int = 500  # FID of E_k against its clean originals on a fixed subset of this size (0 = off)
    stop_metric: Literal["none", "fid", "denoised_fid", "denoised_psnr"] = "none"
    patience: int = 1  # rounds without improvement before stopping

    def validate(self):
        if not 0.0 < self.clean_fraction <= 1.0:
            raise UserError(f"sfbd.clean_fraction must be in (0, 1], got {self.clean_fraction}")
        if self.sigma_zeta <= 0:
            raise UserError(f"sfbd.sigma_zeta must be > 0, got {self.sigma_zeta}")
        if self.rounds < 0 or self.patience < 1 or self.denoised_fid_n < 0 or self.denoised_fid_n == 1:
            raise UserError("sfbd: need rounds >= 0, patience >= 1, denoised_fid_n = 0 or >= 2")
        for name in ("forward_steps", "backward_batch", "chunk"):
            if getattr(self, name) <= 0:
                raise UserError(f"sfbd.{name} must be positive, got {getattr(self, name)}")
        if self.backward_steps < 2:
            raise UserError(f"sfbd.backward_steps must be >= 2, got {self.backward_steps}")
        config.check_choice("sfbd.backward_grid", self.backward_grid, GRIDS)
        config.check_choice("sfbd.backward_scheme", self.backward_scheme, SDE_SCHEMES)
        if self.noise_seed < 0:
            raise UserError(f"sfbd.noise_seed must be >= 0, got {self.noise_seed}")
        if bool(self.noisy_data) != bool(self.clean_data):
            raise UserError("sfbd.noisy_data and sfbd.clean_data go together: your noisy set and your clean images")


@dataclasses.dataclass
class SFBDJobConfig(TrainJobConfig):
    """The `attndiff train` job's sections (train.steps = pretraining steps) plus [sfbd], and
    optionally [symmetry]: an equivariant model learns a symmetric distribution from noisy data."""

    name: str = "sfbd-mnist-cpu"
    sfbd: SFBDConfig = dataclasses.field(default_factory=SFBDConfig)
    symmetry: SymmetryConfig = dataclasses.field(default_factory=SymmetryConfig)

    @property
    def total_steps(self) -> int:
        """Training steps of the whole SFBD run: the compute the baselines get too."""
        return self.train.steps + self.sfbd.rounds * self.sfbd.forward_steps

    def validate(self):
        if self.unet.num_classes:
            raise UserError("sfbd: class-conditional models are not supported yet (set unet.num_classes = 0)")
        if self.sfbd.noisy_data and self.fid.n and not self.fid.ref:
            raise UserError("with your own noisy data, name the FID reference (fid.ref: held-out clean images such as "
                            "folder:PATH, or a built-in dataset), or set fid.n = 0")


def load_split(cfg: SFBDJobConfig) -> NoisySplit:
    """The clean and noisy sets: your own (sfbd.noisy_data), or a split of [data] with noise added."""
    if cfg.sfbd.noisy_data:
        return own_split(cfg)
    return make_noisy_split(load_data(cfg.data), clean_fraction=cfg.sfbd.clean_fraction,
                            sigma_zeta=cfg.sfbd.sigma_zeta, seed=cfg.sfbd.noise_seed)


def backward_round(spec: ModelSpec, s: SFBDConfig, split: NoisySplit, ema, run: Run, k: int) -> torch.Tensor:
    """E_k: every noisy image denoised by the round-k model, written (and resumed) chunk by chunk.

    Under torchrun rank r takes chunks r, r + N, r + 2N, ...; each chunk file holds its images'
    dataset indices, and every rank reads the whole set back once all chunks are written. Each
    image's noise is seeded by its index, so the result does not depend on the number of ranks.
    """
    folder = run.path / "denoised" / f"round{k}"
    if distributed.is_main():
        folder.mkdir(parents=True, exist_ok=True)
        for old in (run.path / "denoised").glob("round*"):  # earlier rounds' sets are no longer needed
            if old != folder and not s.keep_denoised:
                shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    denoiser = spec.sampling_denoiser(ema)
    n = len(split.noisy)
    starts = range(0, n, s.chunk)
    mine = starts[distributed.rank()::distributed.world_size()]
    chunks, computed, t0 = {}, 0, time.perf_counter()
    bar = progress.bar(total=sum(min(s.chunk, n - a) for a in mine), desc=f"backward round {k}", unit="img")
    try:  # closed on errors too, so an error message starts on a clean line
        for start in mine:
            stop = min(start + s.chunk, n)
            index = split.noisy_index[start:stop]
            chunk = _read_chunk(folder / f"{start:08d}.npz", index)
            if chunk is None:
                seeds = [seeding.derive(s.noise_seed, "backward", k, int(i)) for i in index]
                chunk = backward(denoiser, split.noisy[start:stop], s.sigma_zeta, steps=s.backward_steps,
                                 grid=s.backward_grid, stochastic=s.stochastic, scheme=s.backward_scheme, seeds=seeds,
                                 edm=spec.edm, batch_size=s.backward_batch, device=spec.device)
                write_npz(folder / f"{start:08d}.npz", denoised=chunk.numpy(), index=np.asarray(index))
                computed += stop - start
            chunks[start] = chunk
            bar.update(stop - start)
    finally:
        bar.close()
    distributed.barrier()  # the forward step waits for every shard
    computed = int(distributed.all_sum(computed))
    if computed:
        seconds = time.perf_counter() - t0
        run.log({"tag": BACKWARD, "round": k, "images": computed, "seconds": round(seconds, 2),
                 "images_per_s": computed / seconds, "ranks": distributed.world_size()})
    return torch.cat([chunks[a] if a in chunks else _chunk_written(folder, a, split.noisy_index[a:a + s.chunk])
                      for a in starts])


def read_denoised(run_dir: Path, k: int, split: NoisySplit, chunk: int) -> torch.Tensor:
    """E_k as round k wrote it (earlier rounds' sets stay only with sfbd.keep_denoised)."""
    folder = Path(run_dir) / "denoised" / f"round{k}"
    return torch.cat([_chunk_written(folder, a, split.noisy_index[a:a + chunk])
                      for a in range(0, len(split.noisy), chunk)])


def _chunk_written(folder: Path, start: int, index) -> torch.Tensor:
    chunk = _read_chunk(folder / f"{start:08d}.npz", index)
    if chunk is None:
        raise UserError(f"denoised chunk {folder / f'{start:08d}.npz'} is missing or damaged after the "
                        "backward step; rerun the same command to recompute it")
    return chunk


def _read_chunk(path: Path, index) -> torch.Tensor | None:
    """The denoised images of a chunk file, if it is complete and holds exactly these dataset indices."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            chunk = torch.from_numpy(z["denoised"].copy())
            same = np.array_equal(z["index"], np.asarray(index))
        return chunk if same and len(chunk) == len(index) else None
    except (OSError, ValueError, KeyError, EOFError):
        return None  # damaged (a kill mid-write cannot do this, but a full disk can): recompute


def forward_round(cfg: SFBDJobConfig, spec: ModelSpec, split: NoisySplit, ema, job: Job, k: int, meta: dict,
                  evaluator: Evaluator, steps_done: int) -> tuple[TrainState, dict]:
    """Round k: the backward step with the previous EMA model, then fine-tuning on its output
    (skipped as a whole when a killed run finished it); the new state and the round's record."""
    s, run = cfg.sfbd, job.run
    forward_cfg = dataclasses.replace(cfg.train, steps=s.forward_steps, warmup_steps=s.forward_warmup_steps,
                                      seed=seeding.derive(cfg.train.seed, "forward", k))
    net = spec.new_net()
    net.load_state_dict(ema.state_dict())  # warm start from the previous EMA weights, fresh optimizer
    state = TrainState(net, forward_cfg, ema=copy.deepcopy(ema))
    finished = checkpoint.load_latest(run.checkpoints, forward_tag(k))
    evaluated = run.last(EVAL, round=k)
    if finished and finished[1]["step"] >= s.forward_steps and evaluated:
        state.load_tensors(finished[0], finished[1]["step"])  # a resumed run: round k is complete
        return state, evaluated
    denoised = backward_round(spec, s, split, ema, run, k)
    images = torch.cat([split.clean.images, denoised]) if s.forward_data == "clean+denoised" else denoised
    train(state, images, forward_cfg, edm=cfg.edm, run=run, tag=forward_tag(k), loss_fn=spec.loss(state.ema),
          meta={**meta, "round": k}, device=cfg.device, desc=f"forward round {k}")
    return state, evaluator(k, state.ema, denoised, steps_done + state.step)


def run_sfbd(cfg: SFBDJobConfig) -> Path:
    s = cfg.sfbd
    split = load_split(cfg)
    job, cfg, spec = start(cfg, split.clean.shape)
    meta = model_meta(cfg, split.clean.shape)
    evaluator = Evaluator(spec, split, job.run, sample=cfg.sample, fid=cfg.fid, dataset=cfg.fid_reference,
                          denoised_fid_n=s.denoised_fid_n, seed=s.noise_seed, batch_size=cfg.train.batch_size)
    net = spec.new_net()
    source = f"{s.noisy_data} and {s.clean_data}" if s.noisy_data else cfg.data.name
    progress.say(f"{cfg.name}: {len(split.clean)} clean + {len(split.noisy)} noisy images (sigma_zeta "
                 f"{s.sigma_zeta}) from {source}; network {count_parameters(net) / 1e6:.2f}M parameters; "
                 f"run folder {job.path}")
    state = TrainState(net, cfg.train)
    train(state, split.clean.images, cfg.train, edm=cfg.edm, run=job.run, tag=PRETRAIN, loss_fn=spec.loss(state.ema),
          meta=meta, device=cfg.device, desc="pretrain (clean only)")
    steps_done = state.step
    records = [evaluator(0, state.ema, split.noisy, steps_done)]  # round 0: the clean-only model; E_0 = noisy set
    for k in range(1, s.rounds + 1):
        if should_stop(s.stop_metric, s.patience, records):
            progress.say(f"stopping after round {k - 1}: {s.stop_metric} did not improve for {s.patience} round(s)")
            break
        state, record = forward_round(cfg, spec, split, state.ema, job, k, meta, evaluator, steps_done)
        records.append(record)
        steps_done += state.step
    return job.finish(f"attndiff SFBD: {cfg.name}", lambda: sfbd_sections(job.run))
