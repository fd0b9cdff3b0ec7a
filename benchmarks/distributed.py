"""Scale-out and checkpoint cost on this machine.

1. The SFBD backward step (the real sharded `backward_round` of `attndiff sfbd run`, the main
   job's UNet and settings, MNIST images with frozen noise): images/s with 1 rank x 1 thread,
   1 rank x 2 threads and 2 ranks x 1 thread (torchrun, gloo), and the scaling efficiency
   images/s(2 ranks) / (2 x images/s(1 rank, 1 thread)). Every setting runs `--repeats` times
   in turn; medians are reported.
2. Checkpoint overhead: training steps of the same UNet with a checkpoint after every step
   against none, in turn; the difference per step and the checkpoint's size.

    python benchmarks/distributed.py                 # about 5 minutes on 2 CPU cores
    python benchmarks/distributed.py --images 200 --repeats 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch  # noqa: E402
from common import save_results  # noqa: E402

from attndiff import config, distributed  # noqa: E402
from attndiff.diffusion.training import TrainState, train  # noqa: E402
from attndiff.jobs.sfbd import SFBDJobConfig, backward_round, load_split  # noqa: E402
from attndiff.jobs.train import model_spec  # noqa: E402
from attndiff.run import Run  # noqa: E402

CONFIG = "configs/sfbd/mnist-cpu.toml"
SETTINGS = [("1 rank x 1 thread", 1, 1), ("1 rank x 2 threads", 1, 2), ("2 ranks x 1 thread", 2, 1)]


def job(images: int, out: str) -> SFBDJobConfig:
    """The main job's config with the noisy set cut to `images` (clean_fraction keeps the split's logic)."""
    total = images * 25 // 24 + 1  # 4% clean, the rest noisy
    return config.load(SFBDJobConfig, CONFIG, [f"data.limit={total}", f'out="{out}"', f"sfbd.chunk={images // 4}"])


def worker(images: int, out: str) -> None:
    """One timed backward step (run under torchrun or alone); rank 0 prints images/s as JSON."""
    distributed.init()
    cfg = job(images, out)
    split = load_split(cfg)
    torch.manual_seed(0)
    spec = model_spec(cfg, split.clean.shape)
    ema = spec.new_net().eval()
    run = Run(out)
    distributed.barrier()
    t = time.perf_counter()
    backward_round(spec, cfg.sfbd, split, ema, run, 1)
    seconds = time.perf_counter() - t
    if distributed.is_main():
        print(json.dumps({"images": len(split.noisy), "seconds": seconds, "images_per_s": len(split.noisy) / seconds}))
    distributed.barrier()
    distributed.shutdown()


def timed_backward(ranks: int, threads: int, images: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] \
            if ranks > 1 else [sys.executable]
        r = subprocess.run([*head, __file__, "--worker", "--images", str(images), "--out", out], env=env,
                           capture_output=True, text=True, check=False)
        if r.returncode:
            raise SystemExit(r.stderr[-2000:])
        return json.loads(r.stdout.strip().splitlines()[-1])


def checkpoint_overhead(steps: int, repeats: int) -> dict:
    """Median seconds per training step with a checkpoint every step and with none, in turn."""
    cfg = job(200, "")
    split = load_split(cfg)
    torch.set_num_threads(2)
    times = {"every step": [], "none": []}
    size = 0
    for _ in range(repeats):
        for label, every in (("every step", 1), ("none", 10**9)):
            with tempfile.TemporaryDirectory() as out:
                train_cfg = dataclasses.replace(cfg.train, steps=steps, checkpoint_every=every, log_every=10**9)
                torch.manual_seed(0)
                state = TrainState(model_spec(cfg, split.clean.shape).new_net(), train_cfg)
                run = Run(out)
                t = time.perf_counter()
                train(state, split.clean.images, train_cfg, edm=cfg.edm, run=run, tag="bench")
                times[label].append((time.perf_counter() - t) / steps)
                size = max([size, *(p.stat().st_size for p in run.checkpoints.glob("*.safetensors"))])
    med = {k: statistics.median(v) for k, v in times.items()}
    per_checkpoint = (med["every step"] - med["none"]) * steps / (steps - 1)  # "none" still saves the last step
    return {"s_per_step": med, "overhead_s": per_checkpoint, "overhead_fraction": per_checkpoint / med["none"],
            "checkpoint_bytes": size, "checkpoint_every": cfg.train.checkpoint_every}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=480, help="noisy images denoised per timed backward step")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.images, args.out)
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in SETTINGS}
    for _ in range(args.repeats):
        for name, ranks, threads in SETTINGS:
            runs[name].append(timed_backward(ranks, threads, args.images))
            print(f"{name}: {runs[name][-1]['images_per_s']:.2f} images/s", flush=True)
    backward = {name: statistics.median(r["images_per_s"] for r in v) for name, v in runs.items()}
    efficiency = backward["2 ranks x 1 thread"] / (2 * backward["1 rank x 1 thread"])
    ckpt = checkpoint_overhead(steps=20, repeats=args.repeats)
    save_results("distributed", {"images": args.images, "repeats": args.repeats, "backward_images_per_s": backward,
                                 "runs": runs, "scaling_efficiency": efficiency, "checkpoint": ckpt},
                 table(backward, efficiency, ckpt, args.images))


def table(backward: dict, efficiency: float, ckpt: dict, images: int) -> str:
    lines = [f"SFBD backward step, main-job UNet, {images} noisy MNIST images, CPU (gloo):", "",
             "| setting | images / s | x 1 rank, 1 thread |", "|---|---:|---:|"]
    base = backward["1 rank x 1 thread"]
    for name, v in backward.items():
        lines.append(f"| {name} | {v:.2f} | {v / base:.2f} |")
    lines += ["", f"Scaling efficiency of 2 ranks: {efficiency:.0%}.", "",
              "| checkpoint | s / training step |", "|---|---:|",
              f"| none | {ckpt['s_per_step']['none']:.3f} |",
              f"| after every step | {ckpt['s_per_step']['every step']:.3f} |", "",
              f"One checkpoint ({ckpt['checkpoint_bytes'] / 1e6:.1f} MB: net, EMA and Adam state) costs "
              f"{ckpt['overhead_s'] * 1000:.0f} ms, {ckpt['overhead_fraction']:.0%} of a step; at the main "
              f"job's checkpoint_every = {ckpt['checkpoint_every']} that is "
              f"{ckpt['overhead_fraction'] / ckpt['checkpoint_every']:.2%}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
