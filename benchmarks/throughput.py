"""Training and sampling throughput of the default CPU UNet, fp32 against bf16 autocast, and
the FID features: the TorchScript Inception network against the same network in ONNX Runtime.

Each configuration is timed in alternation with the others (round-robin), and medians are
reported, so that the ratios come from the same minutes of this noisy machine. Training
FLOPs per image are counted with torch's FlopCounterMode and compared with the measured
bf16 matmul peak.

    python benchmarks/throughput.py [--threads 2] [--rounds 5]
    python benchmarks/throughput.py --parts inception --name throughput-inception   # FID features only
    python benchmarks/throughput.py --parts diffusers --precisions fp32 --name throughput-diffusers
    python benchmarks/throughput.py --parts inference --sample-batch 250 --name throughput-inference

The `diffusers` part trains the default UNet beside the UNet a user would pick instead, a diffusers
UNet2DModel of about the same size (1.11M parameters: 32/64/64 channels, one block per level,
attention at 7x7), with the same EDM loss, Adam and batch, in one process, alternating; and the
default UNet with each cheap lever alone (channels_last memory, fused Adam), so that each is
measured by itself. diffusers is only a benchmark extra: `pip install -e ".[bench]"`.
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
from attndiff.data.images import load as load_images  # noqa: E402
from attndiff.diffusion.edm import Batch, EDMConfig, Precond, edm_loss  # noqa: E402
from attndiff.diffusion.inference import OnnxNet  # noqa: E402
from attndiff.diffusion.sampling import edm_sigmas, sample  # noqa: E402
from attndiff.diffusion.unet import UNet, count_parameters  # noqa: E402
from attndiff.jobs.sfbd import SFBDJobConfig  # noqa: E402
from attndiff.jobs.spd import SPDJobConfig  # noqa: E402
from attndiff.jobs.train import TrainJobConfig  # noqa: E402
from attndiff.metrics import fid  # noqa: E402

ROOT = Path(__file__).parent.parent


def matmul_peak(dtype, n=2048, repeats=5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    return 2 * n**3 / median_time(lambda: a @ b, repeats) / 1e9


def inception_speed(rounds: int, n: int = 100) -> dict:
    """Inception features of n MNIST test images in fp32, torch and onnx alternating; medians."""
    images = load_images("mnist", "test").images[:n]
    times, feats = {"torch": [], "onnx": []}, {}
    for b in times:  # warm-up (and the one-time ONNX export)
        fid.features(images[:50], backend=b, progress=False)
    for _ in range(rounds):
        for b in times:
            times[b].append(median_time(lambda: feats.__setitem__(b, fid.features(images, backend=b, progress=False)),
                                        1))
    speed = {b: n / statistics.median(t) for b, t in times.items()}
    return {"img_per_s": speed, "speedup": speed["onnx"] / speed["torch"], "n": n,
            "max_relative_difference": float(abs(feats["onnx"] - feats["torch"]).max() / abs(feats["torch"]).max())}


def unet_speed(args) -> tuple[dict, str]:
    """Training and sampling images/s of the default CPU UNet in each of args.precisions."""
    cfg = config.load(TrainJobConfig, ROOT / "configs/train/mnist-cpu.toml")
    edm = EDMConfig()
    precisions = {k: {"fp32": None, "bf16": torch.bfloat16}[k] for k in args.precisions}
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
    train_t, sample_t, peaks = ({k: [] for k in precisions} for _ in range(3))
    for _ in range(args.rounds):
        for k in precisions:
            train_t[k].append(median_time(lambda: train_step(k), 3))
            sample_t[k].append(median_time(lambda: sample_batch(k), 1))
            peaks[k].append(matmul_peak(precisions[k] or torch.float32))

    with FlopCounterMode(display=False) as counter:
        train_step(next(iter(precisions)))
    flops_per_image = counter.get_total_flops() / args.batch
    res = {"params": count_parameters(next(iter(nets.values()))), "batch": args.batch,
           "sample_batch": args.sample_batch,
           "sampler": f"Heun, {cfg.sample.steps} sigmas, {2 * cfg.sample.steps - 1} network evaluations",
           "matmul_gflops": {k: statistics.median(v) for k, v in peaks.items()},
           "train_img_per_s": {k: args.batch / statistics.median(v) for k, v in train_t.items()},
           "sample_img_per_s": {k: args.sample_batch / statistics.median(v) for k, v in sample_t.items()},
           "train_gflop_per_image": flops_per_image / 1e9}
    res["train_fraction_of_matmul_peak"] = {k: res["train_img_per_s"][k] * flops_per_image / 1e9 / peak
                                            for k, peak in res["matmul_gflops"].items()}
    return res, unet_table(args, res)


def unet_table(args, res: dict) -> str:
    t, s, m, f = (res[k] for k in ("train_img_per_s", "sample_img_per_s", "matmul_gflops",
                                   "train_fraction_of_matmul_peak"))
    ks = list(t)
    ratio = len(ks) == 2
    rows = [("training, images/s (batch " + str(args.batch) + ")", t, ".0f"),
            (f"sampling, images/s ({res['sampler']}, batch {args.sample_batch})", s, ".1f"),
            ("matmul peak, GFLOP/s (2048x2048)", m, ".0f")]
    lines = [f"Default CPU UNet ({res['params'] / 1e6:.2f}M parameters, configs/train/mnist-cpu.toml), 28x28, "
             f"{args.threads} threads, medians of {args.rounds} alternating rounds.", "",
             "| | " + " | ".join(ks) + (" | " + f"{ks[1]} / {ks[0]}" if ratio else "") + " |",
             "|---|" + "---:|" * (len(ks) + ratio)]
    for name, values, fmt in rows:
        cells = [format(values[k], fmt) for k in ks] + ([f"{values[ks[1]] / values[ks[0]]:.2f}"] if ratio else [])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| training as a fraction of the matmul peak | " + " | ".join(f"{f[k]:.1%}" for k in ks)
                 + (" | |" if ratio else " |"))
    lines += ["", f"Training costs {res['train_gflop_per_image']:.2f} GFLOP per image (forward + backward, "
              "FlopCounterMode)."]
    return "\n".join(lines)


class DiffusersNet(torch.nn.Module):
    """diffusers' UNet2DModel behind the F(x, c_noise, labels) interface that Precond calls."""

    def __init__(self, resolution: int):
        super().__init__()
        try:
            from diffusers import UNet2DModel
        except ImportError as e:
            raise SystemExit("the diffusers part needs diffusers: pip install -e '.[bench]'") from e
        self.model = UNet2DModel(sample_size=resolution, in_channels=1, out_channels=1,
                                 block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=32,
                                 down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))

    def forward(self, x, c_noise, class_labels=None):
        return self.model(x, c_noise).sample


def diffusers_speed(args) -> tuple[dict, str]:
    """Training images/s of the default UNet, alone and with each lever, against diffusers' UNet2DModel."""
    cfg = config.load(TrainJobConfig, ROOT / "configs/train/mnist-cpu.toml")
    edm = EDMConfig()
    variants = {  # name: (network, memory format, Adam options)
        "attndiff UNet": (lambda: UNet(cfg.unet, 1, 28), torch.contiguous_format, {}),
        "attndiff UNet, channels_last": (lambda: UNet(cfg.unet, 1, 28), torch.channels_last, {}),
        "attndiff UNet, fused Adam": (lambda: UNet(cfg.unet, 1, 28), torch.contiguous_format, {"fused": True}),
        "diffusers UNet2DModel": (lambda: DiffusersNet(28), torch.contiguous_format, {}),
    }
    steps, params = {}, {}
    for precision in args.precisions:
        dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
        for name, (build, memory_format, adam) in variants.items():
            torch.manual_seed(0)
            net = build().to(memory_format=memory_format)
            params[name] = count_parameters(net)
            opt = torch.optim.Adam(net.parameters(), 1e-4, **adam)
            x = torch.randn(args.batch, 1, 28, 28).contiguous(memory_format=memory_format)

            def step(net=net, opt=opt, x=x, dtype=dtype):
                loss = edm_loss(Precond(net, 0.5, dtype), Batch(x), cfg=edm).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            steps[precision, name] = step
    for step in steps.values():  # warm-up
        step()
    times = {k: [] for k in steps}
    for _ in range(args.rounds):
        for k, step in steps.items():
            times[k].append(median_time(step, 3))
    speed = {p: {name: args.batch / statistics.median(times[p, name]) for name in variants}
             for p in args.precisions}
    res = {"batch": args.batch, "rounds": args.rounds, "params": params, "train_img_per_s": speed,
           "step_seconds": {f"{p} / {name}": t for (p, name), t in times.items()}}
    lines = [f"Training images/s, batch {args.batch}, 28x28, same EDM loss and Adam, {args.threads} threads, medians "
             f"of {args.rounds} alternating rounds of 3 steps:", "",
             "| network | parameters | " + " | ".join(args.precisions) + " | "
             + " | ".join(f"{p} / diffusers" for p in args.precisions) + " |",
             "|---|---:|" + "---:|" * 2 * len(args.precisions)]
    for name in variants:
        lines.append(f"| {name} | {params[name] / 1e6:.2f}M | "
                     + " | ".join(f"{speed[p][name]:.0f}" for p in args.precisions) + " | "
                     + " | ".join(f"{speed[p][name] / speed[p]['diffusers UNet2DModel']:.2f}" for p in args.precisions)
                     + " |")
    return res, "\n".join(lines)


# The sampling networks measured by the `inference` part: (config class, config, resolution); the
# tests' tiny UNet is the one tests/jobs uses (8 channels, two levels) on 8x8 images.
INFERENCE_NETS = {"default": (TrainJobConfig, "configs/train/mnist-cpu.toml", 28),
                  "sfbd 16 px": (SFBDJobConfig, "configs/sfbd/mnist16-regime.toml", 16),
                  "spd 16 px": (SPDJobConfig, "configs/spd/c4-mnist16-regime.toml", 16),
                  "tests' tiny": (TrainJobConfig, None, 8)}
TINY_UNET = ["unet.channels=8", "unet.channel_mult=[1, 2]", "unet.attn_levels=[1]"]


def inference_speed(args) -> tuple[dict, str]:
    """The sampling network's forward pass (what sampling and SFBD's backward step call), torch
    against ONNX Runtime (attndiff.diffusion.inference), fp32, alternating, for networks of several
    sizes: network evaluations/s, the seconds one export takes (the ONNX graph and its session;
    done again whenever the weights change) and the image evaluations it takes to repay it."""
    res, rows = {}, []
    for name, (kind, path, resolution) in INFERENCE_NETS.items():
        cfg = config.load(kind, ROOT / path if path else None, [] if path else TINY_UNET)
        torch.manual_seed(0)
        net = UNet(cfg.unet, 1, resolution).eval()
        with torch.no_grad():
            for p in net.parameters():  # trained-like weights, not the zero-initialised output layer
                p.normal_(0, 0.05)
        paths = {"torch": net, "onnx": OnnxNet(net)}
        x, c = torch.randn(args.sample_batch, 1, resolution, resolution), torch.randn(args.sample_batch)
        with torch.no_grad():
            out = {k: f(x, c) for k, f in paths.items()}  # warm-up and the one export
            export = median_time(lambda: OnnxNet(net)(x[:2], c[:2]), 3)  # a fresh wrapper exports once
            times = {k: [] for k in paths}
            for _ in range(args.rounds):
                for k, f in paths.items():
                    times[k].append(median_time(lambda: f(x, c), 3))
        speed = {k: args.sample_batch / statistics.median(t) for k, t in times.items()}
        saved = 1 / speed["torch"] - 1 / speed["onnx"]  # seconds per image evaluation
        res[name] = {"config": path, "resolution": resolution, "parameters": count_parameters(net),
                     "evals_per_s": speed, "speedup": speed["onnx"] / speed["torch"], "export_s": export,
                     "break_even_evals": export / saved if saved > 0 else None,
                     "max_relative_difference": float((out["onnx"] - out["torch"]).abs().max()
                                                      / out["torch"].abs().max())}
        r = res[name]
        rows.append(f"| {name} | {resolution} | {r['parameters']:,} | {speed['torch']:.0f} | {speed['onnx']:.0f} | "
                    f"{r['speedup']:.2f} | {export:.2f} | "
                    + (f"{r['break_even_evals']:,.0f}" if r["break_even_evals"] else "never") + " |")
    worst = max(r["max_relative_difference"] for r in res.values())
    return {"batch": args.sample_batch, "networks": res}, "\n".join([
        f"The sampling network's forward pass in fp32 (batch {args.sample_batch}, {args.threads} threads, medians of "
        f"{args.rounds} alternating rounds of 3 calls; an export: median of 3), network evaluations (images x steps) "
        "per second:", "",
        "| network | px | parameters | torch | ONNX Runtime | onnx / torch | export (s) | evaluations to repay it |",
        "|---|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
        f"Largest difference between the two paths' outputs: {worst:.1e} of the largest."])


def inception_table(args, inception: dict) -> str:
    speed = inception["img_per_s"]
    return "\n".join([
        f"FID features in fp32 ({inception['n']} MNIST test images, batch 50, {args.threads} threads, medians of "
        f"{args.rounds} alternating rounds):", "",
        "| | torch (TorchScript) | ONNX Runtime | onnx / torch |", "|---|---:|---:|---:|",
        f"| Inception features, images/s | {speed['torch']:.1f} | {speed['onnx']:.1f} | {inception['speedup']:.2f} |",
        "", f"Largest difference between the two paths' features: {inception['max_relative_difference']:.1e} "
        "of the largest feature."])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds per configuration")
    p.add_argument("--batch", type=int, default=64, help="training batch (the mnist-cpu default)")
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--parts", nargs="+", default=["unet", "inception"],
                   choices=["unet", "inception", "diffusers", "inference"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                   help="UNet precisions (bf16 is emulated, and very slow, on CPUs without AVX512-BF16 or AMX)")
    p.add_argument("--name", default="throughput", help="results name")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    res, tables = {}, []
    if "unet" in args.parts:
        res["unet"], table = unet_speed(args)
        tables.append(table)
    if "diffusers" in args.parts:
        res["vs_diffusers"], table = diffusers_speed(args)
        tables.append(table)
    if "inference" in args.parts:
        res["inference_fp32"], table = inference_speed(args)
        tables.append(table)
    if "inception" in args.parts:
        res["inception_fp32"] = inception_speed(args.rounds)
        tables.append(inception_table(args, res["inception_fp32"]))
    save_results(args.name, res, "\n\n".join(tables) + "\n")


if __name__ == "__main__":
    main()
