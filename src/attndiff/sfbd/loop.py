"""`attndiff sfbd run`: SFBD (Algorithm 1 of the paper) on the shared EDM core.

    pretrain D on the clean part
    for k = 1..K:
        backward: E_k = reverse process of the current EMA model from sigma_zeta to 0, for every noisy y
        forward:  fine-tune from the previous EMA weights (fresh optimizer) on clean + E_k (or E_k only)

Every phase is resumable: training phases resume from their checkpoints, the denoised set
is written in chunks (each image seeded by its dataset index and the round, so a resumed
chunk equals the one an uninterrupted run would write), and finished evaluations are read
back from metrics.jsonl. Rerunning the same command continues where a killed run stopped.
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
from tqdm.auto import tqdm

from attndiff import UserError, checkpoint, config, distributed
from attndiff.diffusion.job import TrainJobConfig, ema_denoiser, evaluate, load_data, model_meta, on_this_rank
from attndiff.diffusion.training import TrainState, train
from attndiff.diffusion.unet import count_parameters
from attndiff.fsutil import write_npz
from attndiff.metrics import fid as fid_metric
from attndiff.report import figures
from attndiff.report.figures import save_grid
from attndiff.report.html import fig_tag, round_table, write_report
from attndiff.run import Run
from attndiff.sfbd.backward import backward
from attndiff.sfbd.noisy import NoisySplit, make_noisy_split
from attndiff.symmetry.models import SymmetryConfig, build_net, sampling_denoiser, training_loss

STOP_METRICS = {"fid": -1, "denoised_fid": -1, "denoised_psnr": +1}  # sign: +1 higher is better


@dataclasses.dataclass
class SFBDConfig:
    clean_fraction: float = 0.04  # share of the training images that stay clean
    sigma_zeta: float = 0.59  # noise std of the noisy part, on the [-1, 1] pixel scale
    noise_seed: int = 0  # seeds the clean/noisy split, the frozen noise and the backward noise
    rounds: int = 3  # K backward/forward rounds after pretraining
    forward_steps: int = 300  # fine-tuning steps per round (batch size and lr from [train])
    forward_warmup_steps: int = 20
    forward_data: Literal["clean+denoised", "denoised"] = "clean+denoised"  # released code / paper pseudocode
    backward_steps: int = 40  # points of the EDM grid before truncation at sigma_zeta (authors: 40)
    stochastic: bool = True  # reverse SDE (the paper); false: probability-flow ODE with Heun (released code)
    backward_batch: int = 250
    chunk: int = 1000  # images per incrementally written file of the denoised set
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


def new_net(cfg: SFBDJobConfig, shape) -> torch.nn.Module:
    return build_net(cfg.unet, shape, cfg.symmetry).to(cfg.device)


def model_denoiser(ema, cfg: SFBDJobConfig):
    """The EMA network as the denoiser that samples and denoises (frame-averaged for fa and reg)."""
    return sampling_denoiser(ema_denoiser(ema, cfg), cfg.symmetry)


def loss_of(cfg: SFBDJobConfig, state: TrainState):
    """The training loss of the configured symmetry method (the plain EDM loss by default)."""
    return training_loss(cfg.symmetry, cfg.edm, target=ema_denoiser(state.ema, cfg))


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for [-1, 1] images (peak-to-peak 2)."""
    mse = (x.clamp(-1, 1) - ref).square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


class Evaluator:
    """Everything measured after a round; needs the held-back originals, which training never sees."""

    def __init__(self, cfg: SFBDJobConfig, split: NoisySplit, run: Run):
        self.cfg, self.split, self.run = cfg, split, run
        n = min(cfg.sfbd.denoised_fid_n, len(split.noisy))
        perm = torch.randperm(len(split.noisy), generator=torch.Generator().manual_seed(cfg.sfbd.noise_seed))
        self.subset = perm[:n].sort().values if n >= 2 else perm[:8].sort().values
        self._original_features = None

    def original_features(self) -> np.ndarray:
        if self._original_features is None:
            self._original_features = fid_metric.features(self.split.originals.images[self.subset],
                                                          progress="original features")
        return self._original_features

    def denoised_metrics(self, denoised: torch.Tensor) -> dict:
        out = {"denoised_psnr": psnr(denoised, self.split.originals.images).mean().item()}
        if self.cfg.sfbd.denoised_fid_n >= 2:
            feats = fid_metric.features(denoised[self.subset].clamp(-1, 1), progress="denoised features")
            out["denoised_fid"] = fid_metric.fid_from_features(feats, self.original_features())
            out["denoised_fid_n"] = len(self.subset)
        return out

    def done(self, k: int) -> dict | None:
        """The logged evaluation of round k, if a previous (killed) run finished it."""
        found = [r for r in self.run.metrics() if r.get("tag") == "sfbd-eval" and r.get("round") == k]
        return found[-1] if found else None

    def __call__(self, k: int, ema, denoised: torch.Tensor, step: int) -> dict:
        """The round-k record, measured by rank 0 and handed to every rank (the stopping rule needs it)."""
        return distributed.on_main(self._evaluate, k, ema, denoised, step)

    def _evaluate(self, k: int, ema, denoised: torch.Tensor, step: int) -> dict:
        record = self.done(k)
        if record is not None:
            return record
        idx = self.subset[:8]
        triplets = torch.cat([self.split.originals.images[idx], self.split.noisy[idx].clamp(-1, 1),
                              denoised[idx].clamp(-1, 1)])
        save_grid(triplets, self.run.samples / f"triplets-round{k}.png", nrow=len(idx))
        cfg = self.cfg
        denoiser = model_denoiser(ema, cfg)
        extra = {"round": k, "images_seen": step * cfg.train.batch_size, **self.denoised_metrics(denoised)}
        record = evaluate(denoiser, cfg, self.split.clean.shape, self.run, tag="sfbd", step=k,
                          fid_dataset=cfg.data.name, extra=extra)
        tqdm.write(f"round {k}: denoised-set PSNR {record['denoised_psnr']:.2f} dB"
                   + (f", denoised-set FID {record['denoised_fid']:.2f}" if "denoised_fid" in record else ""))
        return record


def backward_round(cfg: SFBDJobConfig, split: NoisySplit, ema, run: Run, k: int) -> torch.Tensor:
    """E_k: every noisy image denoised by the round-k model, written (and resumed) chunk by chunk.

    Under torchrun rank r takes chunks r, r + N, r + 2N, ...; each chunk file holds its images'
    dataset indices, and every rank reads the whole set back once all chunks are written. Each
    image's noise is seeded by its index, so the result does not depend on the number of ranks.
    """
    s = cfg.sfbd
    folder = run.path / "denoised" / f"round{k}"
    if distributed.is_main():
        folder.mkdir(parents=True, exist_ok=True)
        for old in (run.path / "denoised").glob("round*"):  # earlier rounds' sets are no longer needed
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    denoiser = model_denoiser(ema, cfg)
    n = len(split.noisy)
    starts = range(0, n, s.chunk)
    mine = starts[distributed.rank()::distributed.world_size()]
    chunks, computed, t0 = {}, 0, time.perf_counter()
    bar = tqdm(total=sum(min(s.chunk, n - a) for a in mine), desc=f"backward round {k}", unit="img", leave=False,
               disable=not distributed.is_main())
    try:  # closed on errors too, so an error message starts on a clean line
        for start in mine:
            stop = min(start + s.chunk, n)
            path = folder / f"{start:08d}.npz"
            index = split.noisy_index[start:stop]
            chunk = _read_chunk(path, index)
            if chunk is None:
                # per-image seeds from (noise seed, round, dataset index): independent of chunking, ranks and resumes
                seeds = [(s.noise_seed * 1009 + k) * 10_000_019 + int(i) for i in index]
                chunk = backward(denoiser, split.noisy[start:stop], s.sigma_zeta, steps=s.backward_steps,
                                 stochastic=s.stochastic, seeds=seeds, edm=cfg.edm, batch_size=s.backward_batch,
                                 device=cfg.device)
                write_npz(path, denoised=chunk.numpy(), index=np.asarray(index))
                computed += stop - start
            chunks[start] = chunk
            bar.update(stop - start)
    finally:
        bar.close()
    distributed.barrier()  # the forward step waits for every shard
    computed = int(distributed.all_sum(computed))
    if computed:
        seconds = time.perf_counter() - t0
        run.log({"tag": "backward", "round": k, "images": computed, "seconds": round(seconds, 2),
                 "images_per_s": computed / seconds, "ranks": distributed.world_size()})
    out = []
    for start in starts:
        chunk = chunks.get(start)
        if chunk is None:
            chunk = _read_chunk(folder / f"{start:08d}.npz", split.noisy_index[start:min(start + s.chunk, n)])
        if chunk is None:
            raise UserError(f"denoised chunk {folder / f'{start:08d}.npz'} is missing or damaged after the "
                            "backward step; rerun the same command to recompute it")
        out.append(chunk)
    return torch.cat(out)


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


def _should_stop(cfg: SFBDConfig, records: list[dict]) -> bool:
    if cfg.stop_metric == "none" or len(records) <= cfg.patience:
        return False
    sign = STOP_METRICS[cfg.stop_metric]
    values = [sign * r[cfg.stop_metric] for r in records if r.get(cfg.stop_metric) is not None]
    if len(values) <= cfg.patience:
        return False
    return max(values[-cfg.patience:]) <= max(values[:-cfg.patience])


def load_split(cfg: SFBDJobConfig) -> NoisySplit:
    return make_noisy_split(load_data(cfg.data), clean_fraction=cfg.sfbd.clean_fraction,
                            sigma_zeta=cfg.sfbd.sigma_zeta, seed=cfg.sfbd.noise_seed)


def run_sfbd(cfg: SFBDJobConfig) -> Path:
    s = cfg.sfbd
    split = load_split(cfg)
    run = Run(cfg.run_dir)
    run.write_config(config.dumps_toml(config.to_dict(cfg)))
    meta = model_meta(cfg, split.clean.shape)
    cfg = on_this_rank(cfg)
    evaluator = Evaluator(cfg, split, run)

    torch.manual_seed(cfg.train.seed)
    net = new_net(cfg, split.clean.shape)
    distributed.say(f"{cfg.name}: {len(split.clean)} clean + {len(split.noisy)} noisy images (sigma_zeta "
                    f"{s.sigma_zeta}) from {cfg.data.name}; UNet {count_parameters(net) / 1e6:.2f}M; "
                    f"run folder {run.path}")
    state = TrainState(net, cfg.train)
    train(state, split.clean.images, cfg.train, edm=cfg.edm, run=run, tag="pretrain", loss_fn=loss_of(cfg, state),
          meta=meta, device=cfg.device, desc="pretrain (clean only)")
    steps_done = state.step
    records = [evaluator(0, state.ema, split.noisy, steps_done)]  # round 0: the clean-only model; E_0 = noisy set

    ema = state.ema
    for k in range(1, s.rounds + 1):
        if _should_stop(s, records):
            distributed.say(f"stopping after round {k - 1}: {s.stop_metric} did not improve for "
                            f"{s.patience} round(s)")
            break
        forward_cfg = dataclasses.replace(cfg.train, steps=s.forward_steps, warmup_steps=s.forward_warmup_steps,
                                          seed=cfg.train.seed + k)
        net = new_net(cfg, split.clean.shape)
        net.load_state_dict(ema.state_dict())  # warm start from the previous EMA weights, fresh optimizer
        state = TrainState(net, forward_cfg, ema=copy.deepcopy(ema))
        finished = checkpoint.load_latest(run.checkpoints, f"round{k}")
        evaluated = evaluator.done(k)
        if finished and finished[1]["step"] >= s.forward_steps and evaluated:
            state.load_tensors(finished[0], finished[1]["step"])  # a resumed run: round k is complete
            records.append(evaluated)
        else:
            denoised = backward_round(cfg, split, ema, run, k)
            images = torch.cat([split.clean.images, denoised]) if s.forward_data == "clean+denoised" else denoised
            train(state, images, forward_cfg, edm=cfg.edm, run=run, tag=f"round{k}", loss_fn=loss_of(cfg, state),
                  meta={**meta, "round": k}, device=cfg.device, desc=f"forward round {k}")
            records.append(evaluator(k, state.ema, denoised, steps_done + state.step))
        steps_done += state.step
        ema = state.ema

    if distributed.is_main():
        report = write_report(run.path, title=f"attndiff SFBD: {cfg.name}", extra_sections=sfbd_sections(run))
        tqdm.write(f"report: {report}")
    return run.path


def sfbd_sections(run: Run) -> list[str]:
    """Report sections of an SFBD run: metrics per round and the round curves."""
    rounds = [r for r in run.metrics() if r.get("tag") == "sfbd-eval"]
    if not rounds:
        return []
    parts = ["<h2>SFBD rounds</h2>", round_table(rounds)]
    for key, title in (("fid", "FID of model samples (round 0 = pretrained on clean only)"),
                       ("denoised_psnr", "PSNR of the denoised set E_k (dB; round 0 = the noisy set)"),
                       ("denoised_fid", "FID of E_k against its clean originals")):
        fig = figures.curves(rounds, key, x="round", by="tag", title=title)
        if fig is not None:
            parts.append(fig_tag(fig, title))
    return parts
