"""Training and sampling throughput of the default CPU UNet, fp32 against bf16 autocast.

Each configuration is timed in alternation with the others (round-robin), and medians are
reported, so that the ratios come from the same minutes of this noisy machine. Training
FLOPs per image are counted with torch's FlopCounterMode and compared with the measured
bf16 matmul peak.

    python benchmarks/throughput.py [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from common import median_time, save_results  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.diffusion.edm import Batch, EDMConfig, Precond, edm_loss  # noqa: E402
from attndiff.diffusion.sampling import edm_sigmas, sample  # noqa: E402
from attndiff.diffusion.unet import UNet, count_parameters  # noqa: E402
from attndiff.jobs.train import TrainJobConfig  # noqa: E402

ROOT = Path(__file__).parent.parent


def matmul_peak(dtype, n=2048, repeats=5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    return 2 * n**3 / median_time(lambda: a @ b, repeats) / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds per configuration")
    p.add_argument("--batch", type=int, default=64, help="training batch (the mnist-cpu default)")
    p.add_argument("--sample-batch", type=int, default=64)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    cfg = config.load(TrainJobConfig, ROOT / "configs/train/mnist-cpu.toml")
    edm = EDMConfig()
    precisions = {"fp32": None, "bf16": torch.bfloat16}
    nets = {k: UNet(cfg.unet, 1, 28) for k in precisions}
    opts = {k: torch.optim.Adam(n.parameters(), 1e-4) for k, n in nets.items()}
    x = torch.randn(args.batch, 1, 28, 28)
    sigmas = edm_sigmas(cfg.sample.steps)
    noise0 = torch.randn(args.sample_batch, 1, 28, 28) * sigmas[0]

    def train_step(k):
        loss = edm_loss(Precond(nets[k], 0.5, precisions[k]), Batch(x), cfg=edm).mean()
        opts[k].zero_grad()
        loss.backward()
        opts[k].step()

    def sample_batch(k):
        sample(Precond(nets[k].eval(), 0.5, precisions[k]), noise0, sigmas)
        nets[k].train()

    for k in precisions:  # warm-up
        train_step(k)
    train_t = {k: [] for k in precisions}
    sample_t = {k: [] for k in precisions}
    peaks = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for k in precisions:
            train_t[k].append(median_time(lambda: train_step(k), 3))
            sample_t[k].append(median_time(lambda: sample_batch(k), 1))
        peaks["fp32"].append(matmul_peak(torch.float32))
        peaks["bf16"].append(matmul_peak(torch.bfloat16))

    with FlopCounterMode(display=False) as counter:
        train_step("fp32")
    flops_per_image = counter.get_total_flops() / args.batch

    res = {
        "params": count_parameters(nets["fp32"]),
        "batch": args.batch,
        "sample_batch": args.sample_batch,
        "sampler": f"Heun, {cfg.sample.steps} sigmas, {2 * cfg.sample.steps - 1} network evaluations",
        "matmul_gflops": {k: statistics.median(v) for k, v in peaks.items()},
        "train_img_per_s": {k: args.batch / statistics.median(v) for k, v in train_t.items()},
        "sample_img_per_s": {k: args.sample_batch / statistics.median(v) for k, v in sample_t.items()},
        "train_gflop_per_image": flops_per_image / 1e9,
    }
    res["bf16_train_speedup"] = res["train_img_per_s"]["bf16"] / res["train_img_per_s"]["fp32"]
    res["bf16_sample_speedup"] = res["sample_img_per_s"]["bf16"] / res["sample_img_per_s"]["fp32"]
    res["bf16_train_fraction_of_matmul_peak"] = (
        res["train_img_per_s"]["bf16"] * flops_per_image / 1e9 / res["matmul_gflops"]["bf16"])
    res["fp32_train_fraction_of_matmul_peak"] = (
        res["train_img_per_s"]["fp32"] * flops_per_image / 1e9 / res["matmul_gflops"]["fp32"])

    t, s, m = res["train_img_per_s"], res["sample_img_per_s"], res["matmul_gflops"]
    table = f"""Default CPU UNet ({res['params'] / 1e6:.2f}M parameters, configs/train/mnist-cpu.toml), 28x28,
{args.threads} threads, medians of {args.rounds} alternating rounds; `python benchmarks/throughput.py`.

| | fp32 | bf16 autocast | bf16 / fp32 |
|---|---:|---:|---:|
| training, images/s (batch {args.batch}) | {t['fp32']:.0f} | {t['bf16']:.0f} | {res['bf16_train_speedup']:.2f} |
| sampling, images/s ({res['sampler']}, batch {args.sample_batch}) | {s['fp32']:.1f} | {s['bf16']:.1f} | {res['bf16_sample_speedup']:.2f} |
| matmul peak, GFLOP/s (2048x2048) | {m['fp32']:.0f} | {m['bf16']:.0f} | {m['bf16'] / m['fp32']:.1f} |
| training as a fraction of the matmul peak | {res['fp32_train_fraction_of_matmul_peak']:.1%} | {res['bf16_train_fraction_of_matmul_peak']:.1%} | |

Training costs {res['train_gflop_per_image']:.2f} GFLOP per image (forward + backward, FlopCounterMode).
"""
    save_results("throughput", res, table)


if __name__ == "__main__":
    main()
