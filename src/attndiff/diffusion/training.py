"""The training loop: Adam with warm-up, EMA, gradient clipping, bf16 autocast, progress,
metrics.jsonl, atomic safetensors checkpoints and exact resume.

Randomness is derived from (seed, step) alone (seeding.derive): the minibatch order comes from a
permutation seeded by (seed, "epoch", e) and the noise of step s from (seed, "train", s, shard). So a
resumed run draws exactly what an uninterrupted run would, with no RNG state to restore
beyond the step counter stored in the checkpoint.

Under torchrun the global batch is split into world_size x grad_accum equal shards; shard i of
step s draws its noise from the stream (seed, "train", s, i), and the gradient is the mean
over the shards. A run on N ranks therefore takes the same steps as one process with
grad_accum = N (up to the order of floating-point sums).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
from pathlib import Path

import torch
from torch import nn

from attndiff import UserError, checkpoint, distributed, progress, seeding
from attndiff.diffusion.edm import Batch, EDMConfig, Loss, Precond, edm_loss
from attndiff.precision import Precision, autocast_dtype
from attndiff.run import Run


@dataclasses.dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100  # linear learning-rate ramp from 0
    ema_halflife_images: int = 500_000  # EDM's 500 kimg ...
    ema_rampup: float = 0.05  # ... shortened to at most 5% of the images seen so far
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    precision: Precision = "auto"
    grad_accum: int = 1  # shards of the batch per rank, one after another (same update, less memory)
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 250
    keep_checkpoints: int = 2

    def validate(self):
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "grad_accum"):
            if getattr(self, name) <= 0:
                raise UserError(f"train.{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise UserError("train: need lr > 0, warmup_steps >= 0, grad_clip >= 0")
        shards = self.grad_accum * distributed.world_size()
        if self.batch_size % shards:
            raise UserError(f"train.batch_size ({self.batch_size}) must be a multiple of ranks x train.grad_accum "
                            f"({distributed.world_size()} x {self.grad_accum})")


def ema_beta(cfg: TrainConfig, images_seen: int, batch: int) -> float:
    halflife = min(cfg.ema_halflife_images, images_seen * cfg.ema_rampup)
    return 0.5 ** (batch / max(halflife, 1e-8))


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, beta: float) -> None:
    for p_ema, p in zip(ema.parameters(), net.parameters()):
        p_ema.lerp_(p.detach(), 1 - beta)
    for b_ema, b in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b)


def batch_indices(n: int, batch: int, step: int, seed: int) -> torch.Tensor:
    """Minibatch `step` of seeded epoch-wise shuffling (the last partial batch of an epoch is dropped)."""
    per_epoch = max(1, n // batch)
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=seeding.generator(seed, "epoch", epoch))
    return perm[pos * batch:(pos + 1) * batch]


class TrainState:
    """Network, EMA copy, optimizer and step: everything a checkpoint holds."""

    def __init__(self, net: nn.Module, cfg: TrainConfig, ema: nn.Module | None = None):
        self.net = net
        self.ema = (ema or copy.deepcopy(net)).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
        self.step = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        out.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        params = [p for g in self.opt.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            for k, v in self.opt.state.get(p, {}).items():
                out[f"opt.{i}.{k}"] = torch.as_tensor(v)
        return out

    def load_tensors(self, tensors: dict[str, torch.Tensor], step: int) -> None:
        def part(prefix):
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.net.load_state_dict(part("net."))
        self.ema.load_state_dict(part("ema."))
        params = [p for g in self.opt.param_groups for p in g["params"]]
        opt_tensors = part("opt.")
        for i, p in enumerate(params):
            state = {k.split(".", 1)[1]: v.clone() for k, v in opt_tensors.items() if k.split(".", 1)[0] == str(i)}
            if state:
                self.opt.state[p] = state
        self.step = step


def train(state: TrainState, images: torch.Tensor, cfg: TrainConfig, *, edm: EDMConfig, run: Run | None = None,
          tag: str = "train", labels: torch.Tensor | None = None, extras: dict[str, torch.Tensor] | None = None,
          loss_fn: Loss | None = None, meta: dict | None = None, device="cpu", desc: str = "training") -> TrainState:
    """Train `state.net` (a raw network) as an EDM denoiser on `images` until `cfg.steps`.

    With a run folder, resumes from its newest `tag` checkpoint, logs to metrics.jsonl and
    checkpoints every `cfg.checkpoint_every` steps and at the end (rank 0 only when distributed;
    every rank resumes from the checkpoint rank 0 chose). `labels` (class labels) and `extras`
    (named per-sample tensors) are indexed with the images into each `Batch`; `loss_fn(denoiser,
    batch, *, generator) -> (B,)` replaces the EDM loss (SFBD baselines, symmetry methods).
    """
    if len(images) == 0:
        raise UserError("cannot train on an empty dataset")
    loop = _Loop(state, images, cfg, edm=edm, run=run, tag=tag, labels=labels, extras=extras or {},
                 loss_fn=loss_fn or functools.partial(edm_loss, cfg=edm), meta=meta or {}, device=device)
    state.net.train()
    bar = progress.bar(total=cfg.steps, initial=state.step, desc=desc, unit="step")
    try:  # closed on errors too, so an error message starts on a clean line
        while state.step < cfg.steps:
            loop.step(bar)
    finally:
        bar.close()
    state.net.eval()
    return state


class _Loop:
    """One training run's fixed parts (shards, denoiser, loss) and its per-step work."""

    def __init__(self, state: TrainState, images, cfg: TrainConfig, *, edm, run, tag, labels, extras, loss_fn,
                 meta, device):
        world, accum = distributed.world_size(), cfg.grad_accum
        self.shards = world * accum
        cfg.validate()  # the shards depend on the number of ranks
        self.batch = min(cfg.batch_size, len(images) // self.shards * self.shards)
        if self.batch == 0:
            raise UserError(f"{len(images)} images cannot be split into {self.shards} shards")
        self.state, self.images, self.cfg, self.run, self.tag = state, images, cfg, run, tag
        self.labels, self.extras, self.loss_fn, self.device = labels, extras, loss_fn, device
        self.meta = {**meta, "seed_rule": seeding.RULE}
        if run is not None:
            _resume(state, run, tag)
        self.net = distributed.wrap_ddp(state.net)  # after resuming: DDP starts from rank 0's weights
        self.denoiser = Precond(self.net, edm.sigma_data, autocast_dtype(cfg.precision, device))
        self.running, self.count = 0.0, 0

    def batch_of(self, part: torch.Tensor) -> Batch:
        return Batch(self.images[part].to(self.device),
                     self.labels[part].to(self.device) if self.labels is not None else None,
                     {k: v[part].to(self.device) for k, v in self.extras.items()})

    def gradients(self, step: int) -> float:
        """Forward and backward over this rank's shards of the global batch; the mean loss of all shards."""
        accum, shard = self.cfg.grad_accum, self.batch // self.shards
        idx = batch_indices(len(self.images), self.batch, step, self.cfg.seed)
        loss = 0.0
        for j in range(accum):
            i = distributed.rank() * accum + j  # this shard's place in the global batch
            seed = seeding.derive(self.cfg.seed, "train", step, i)
            torch.manual_seed(seed)  # dropout draws from the global RNG
            sync = j == accum - 1 or not hasattr(self.net, "no_sync")  # DDP averages gradients on the last shard
            with contextlib.nullcontext() if sync else self.net.no_sync():
                batch = self.batch_of(idx[i * shard:(i + 1) * shard])
                shard_loss = self.loss_fn(self.denoiser, batch, generator=torch.Generator().manual_seed(seed))
                shard_loss = shard_loss.mean() / accum
                value = shard_loss.item()
                if distributed.any_rank(not math.isfinite(value)):  # all ranks stop together
                    became = value if not math.isfinite(value) else "non-finite on another rank"
                    raise UserError(f"loss became {became} at step {step} ({self.tag}); stopping"
                                    + _last_checkpoint(self.run, self.tag))
                shard_loss.backward()
            loss += value
        return distributed.all_sum(loss) / distributed.world_size()

    def step(self, bar) -> None:
        state, cfg, step = self.state, self.cfg, self.state.step
        for g in state.opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        state.opt.zero_grad(set_to_none=True)
        loss = self.gradients(step)
        grad_norm = nn.utils.clip_grad_norm_(state.net.parameters(), cfg.grad_clip or math.inf)
        if not math.isfinite(grad_norm):  # the same on every rank: DDP averaged the gradients
            raise UserError(f"the gradient became {float(grad_norm)} at step {step} ({self.tag}); stopping"
                            + _last_checkpoint(self.run, self.tag))
        state.opt.step()
        ema_update(state.ema, state.net, ema_beta(cfg, (step + 1) * self.batch, self.batch))
        state.step += 1
        self.running, self.count = self.running + loss, self.count + 1
        bar.update(1)
        if state.step % cfg.log_every == 0 or state.step == cfg.steps:
            bar.set_postfix(loss=f"{self.running / self.count:.4f}")
            if self.run is not None:
                self.run.log({"tag": self.tag, "step": state.step, "loss": self.running / self.count,
                              "grad_norm": float(grad_norm), "lr": state.opt.param_groups[0]["lr"]})
            self.running, self.count = 0.0, 0
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
            self.save()

    def save(self) -> None:
        state, run, tag = self.state, self.run, self.tag
        distributed.check_in_step(state.net)
        error = None
        if run is not None and distributed.is_main():
            last = checkpoint.list_checkpoints(run.checkpoints, tag)[-1:]
            try:
                checkpoint.save(run.checkpoints / checkpoint.checkpoint_name(tag, state.step), state.tensors(),
                                {**self.meta, "tag": tag, "step": state.step})
            except UserError as e:
                error = UserError(f"{e}; stopping ({tag} step {state.step})"
                                  + (f"; the previous checkpoint {last[0]} is intact" if last else ""))
            else:
                checkpoint.prune(run.checkpoints, tag, self.cfg.keep_checkpoints)
        if distributed.any_rank(error is not None):
            raise error or UserError(f"rank 0 could not write the {tag} checkpoint at step {state.step}")


def _last_checkpoint(run: Run | None, tag: str) -> str:
    last = checkpoint.list_checkpoints(run.checkpoints, tag)[-1:] if run else []
    return f"; last good checkpoint: {last[0]}" if last else ""


def _resume(state: TrainState, run: Run, tag: str) -> None:
    """Load the newest readable `tag` checkpoint of the run (the one rank 0 finds, on every rank).

    Records a killed run logged after that checkpoint (or, with none, at all) are dropped: they are redone.
    """
    found = checkpoint.load_latest(run.checkpoints, tag) if distributed.is_main() else None
    path = distributed.broadcast(found[2] if found else None)
    if path is not None:
        tensors, saved = found[:2] if found else checkpoint.load(path)
        if saved.get("seed_rule") != seeding.RULE:
            raise UserError(f"{path} was written by an older attndiff whose random streams differ "
                            "(see seeding.py); it cannot resume: start a new run folder")
        state.load_tensors(tensors, saved["step"])
        progress.say(f"resuming {tag} from {Path(path).name} (step {state.step})")
    run.truncate_metrics(lambda r: r.get("tag") != tag or r.get("step", 0) <= state.step)
