"""torch.distributed for the diffusion jobs: launched by torchrun, gloo on CPU, NCCL on GPUs.

    torchrun --nproc_per_node=2 -m attndiff train --config ...
    torchrun --nproc_per_node=2 -m attndiff sfbd run --config ...

Every rank runs the same job. Training splits each global batch across the ranks and averages
gradients (DistributedDataParallel); the SFBD backward step gives each rank its own chunks of
the noisy set. Rank 0 alone writes checkpoints, metrics, samples and reports; the others wait
for it where its results are needed. Without torchrun (WORLD_SIZE unset or 1) every function
here is the single-process identity, so the jobs need no special case.
"""

from __future__ import annotations

import datetime
import os
import warnings
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from attndiff import UserError

T = TypeVar("T")
# Rank 0 evaluates (samples, FID) while the others wait; on CPU that takes minutes, not seconds.
TIMEOUT = datetime.timedelta(hours=3)


def launched() -> bool:
    """True in a process started by torchrun with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_from_env() -> int:
    """This process's rank as torchrun set it (before or without a process group)."""
    return int(os.environ.get("RANK", "0"))


def init() -> None:
    """Join the process group torchrun set up; idempotent.

    Where CUDA is present, CUDA tensors (DDP's gradients) go through NCCL and CPU tensors (the
    small sums and objects here, or a CPU job) through gloo; elsewhere everything uses gloo.
    """
    if not launched() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("cpu:gloo,cuda:nccl", timeout=TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def device(name: str) -> str:
    """The device of this rank: 'cuda' becomes this rank's own GPU (LOCAL_RANK) under torchrun."""
    if name == "cuda" and active():
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return name


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank (any picklable value; the ranks are our own processes)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(value: float) -> float:
    """The sum of a number over the ranks."""
    if not active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on any rank (so all ranks stop together)."""
    return all_sum(1.0 if flag else 0.0) > 0


def check_in_step(module: torch.nn.Module) -> None:
    """Raise if the ranks' copies of `module` differ: DDP keeps them equal, a bad resume would not."""
    if not active():
        return
    with torch.no_grad():
        fingerprint = sum((i + 1) * p.detach().double().sum().item() for i, p in enumerate(module.parameters()))
    bounds = torch.tensor([fingerprint, -fingerprint], dtype=torch.float64)
    dist.all_reduce(bounds, op=dist.ReduceOp.MAX)
    if bounds[0].item() != -bounds[1].item():
        raise UserError(f"the ranks' weights have diverged (fingerprints {-bounds[1].item()} .. {bounds[0].item()})")


def on_main(fn, *args, **kwargs) -> Any:
    """fn(*args, **kwargs) run on rank 0 only; every rank gets its result.

    If it fails on rank 0, the other ranks raise too (a UserError naming rank 0), so none waits forever.
    """
    if not active():
        return fn(*args, **kwargs)
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as e:
            broadcast((None, str(e)))
            raise
        return broadcast((result, None))[0]
    result, error = broadcast(None)
    if error is not None:
        raise UserError(f"rank 0 failed: {error}")
    return result


def wrap_ddp(net: torch.nn.Module) -> torch.nn.Module:
    """net under DistributedDataParallel when running distributed, else net itself."""
    if not active():
        return net
    from torch.nn.parallel import DistributedDataParallel

    # 1x1 convolutions get gradients in a channels-last layout; DDP copies them into its buckets
    # and warns about it on every rank. Correct either way, and a copy of a small tensor.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    dev = next(net.parameters()).device
    return DistributedDataParallel(net, device_ids=[dev] if dev.type == "cuda" else None)
