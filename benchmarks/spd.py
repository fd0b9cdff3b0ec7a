"""Structure-preserving diffusion on rotated MNIST: none, augment, WT, FA and Reg at equal
training compute (same steps and batch, so the same images seen) on 600 / 3,000 / 6,000 images,
plus the single-orientation toy set and the cost of each method.

- Quality: FID of the samples against c4-mnist test images (randomly oriented, i.e. the
  group-augmented reference set), the invariance score (mean FID between the samples and their
  rotations) beside its floor for real, exactly invariant data at the same N, and the
  equivariance error of the denoiser that samples.
- Toy set: share of samples per orientation (an invariant model gives 25% each).
- Cost: median seconds per training step and per denoiser call (batch 64), every method timed
  side by side in one process, rounds interleaved.

Runs are resumable: rerunning the script reuses finished runs and continues unfinished ones.

    python benchmarks/spd.py                                   # everything (hours on 2 CPU cores)
    python benchmarks/spd.py --sizes 600 --methods none wt     # a part
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from common import save_results  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.data.images import load as load_images  # noqa: E402
from attndiff.diffusion import model  # noqa: E402
from attndiff.diffusion.edm import Batch  # noqa: E402
from attndiff.diffusion.training import TrainState  # noqa: E402
from attndiff.diffusion.unet import count_parameters  # noqa: E402
from attndiff.jobs.spd import SPDJobConfig, run_spd  # noqa: E402
from attndiff.jobs.train import load_data, model_spec  # noqa: E402
from attndiff.run import Run  # noqa: E402
from attndiff.symmetry import groups  # noqa: E402
from attndiff.symmetry.metrics import invariance_score  # noqa: E402


def job(config_path: str, overrides: list[str], name: str) -> SPDJobConfig:
    cfg = config.load(SPDJobConfig, config_path, overrides)
    return config.from_dict(SPDJobConfig, {**config.to_dict(cfg), "name": name, "out": f"runs/bench-spd/{name}"})


def final(run_dir: Path, tag: str) -> dict:
    return [r for r in Run(run_dir).metrics() if r.get("tag") == tag][-1]


def with_method(cfg: SPDJobConfig, method: str) -> SPDJobConfig:
    """The config with another symmetry method."""
    return config.from_dict(SPDJobConfig, {**config.to_dict(cfg), "symmetry": {
        **config.to_dict(cfg.symmetry), "method": method}})


def cost(cfgs: dict[str, SPDJobConfig], rounds: int = 5) -> dict[str, dict]:
    """Median seconds per training step and per denoiser call of each method's config (one batch
    of the first config's data), methods interleaved round by round."""
    first = next(iter(cfgs.values()))
    data = load_data(first.data)
    x = data.images[:first.train.batch_size]
    setups, specs = {}, {}
    for method, c in cfgs.items():
        torch.manual_seed(0)
        spec = model_spec(c, data.shape)
        state = TrainState(spec.new_net(), c.train)
        denoiser = spec.denoiser(state.net)
        loss_fn = spec.loss(state.ema)
        sampler = spec.sampling_denoiser(state.ema)
        setups[method], specs[method] = (state, denoiser, loss_fn, sampler), spec
    times = {m: {"train": [], "sample": []} for m in cfgs}
    gen = torch.Generator().manual_seed(0)
    for _ in range(rounds + 1):  # the first round warms up and is dropped
        for method, (state, denoiser, loss_fn, sampler) in setups.items():
            t = time.perf_counter()
            loss = loss_fn(denoiser, Batch(x), generator=gen).mean()
            state.opt.zero_grad()
            loss.backward()
            state.opt.step()
            t1 = time.perf_counter()
            with torch.no_grad():
                sampler(x, 1.0)
            times[method]["train"].append(t1 - t)
            times[method]["sample"].append(time.perf_counter() - t1)
    base = statistics.median(times["none"]["sample"][1:]) if "none" in times else None
    out = {}
    for method, t in times.items():
        train_s, sample_s = statistics.median(t["train"][1:]), statistics.median(t["sample"][1:])
        out[method] = {"train_step_s": train_s, "denoiser_call_s": sample_s,
                       "sample_cost_vs_none": sample_s / base if base else None,
                       "parameters": count_parameters(setups[method][0].net),
                       **flops(specs[method], setups[method][0], x[:1])}
    return out


def flops(spec: model.ModelSpec, state: TrainState, x: torch.Tensor) -> dict[str, int]:
    """FLOPs per image (torch's counter: matmuls and convolutions) of one training step
    (loss, backward) and of one call of the denoiser that samples (frame averaging: |G| passes),
    counted on the torch network (the counter does not see ONNX Runtime's work)."""
    spec = dataclasses.replace(spec, backend="torch")
    loss_fn = spec.loss(state.ema)
    with FlopCounterMode(display=False) as counter:
        loss_fn(spec.denoiser(state.net), Batch(x), generator=torch.Generator().manual_seed(0)).mean().backward()
    state.opt.zero_grad()
    with FlopCounterMode(display=False) as sample_counter, torch.no_grad():
        spec.sampling_denoiser(state.ema)(x, 1.0)
    return {"train_flops_per_image": counter.get_total_flops(),
            "sample_flops_per_image": sample_counter.get_total_flops()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/spd/c4-mnist-cpu.toml")
    p.add_argument("--sizes", type=int, nargs="+", default=[600, 3000, 6000])
    p.add_argument("--methods", nargs="+", default=list(model.RECIPES), choices=list(model.RECIPES))
    p.add_argument("--toy-config", default="configs/spd/toy-upright.toml")
    p.add_argument("--toy-methods", nargs="*", default=["none", "augment", "wt", "reg"], choices=list(model.RECIPES))
    p.add_argument("--name", default="spd", help="results name (default spd)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()

    base = config.load(SPDJobConfig, args.config, args.overrides)
    results = {"config": args.config, "overrides": args.overrides, "steps": base.train.steps,
               "batch_size": base.train.batch_size, "fid_n": base.fid.n, "group": base.symmetry.group}
    print("timing the methods side by side ...")
    results["cost"] = cost({m: with_method(base, m) for m in args.methods})

    runs = []
    for size in args.sizes:
        for method in args.methods:
            name = f"{base.name}-n{size}-{method}"
            cfg = job(args.config, args.overrides + [f"data.limit={size}", f"symmetry.method={method}"], name)
            t = time.perf_counter()
            run_dir = run_spd(cfg)
            ev, sym = final(run_dir, "spd-eval"), final(run_dir, "spd-symmetry")
            runs.append({"size": size, "method": method, "fid": ev.get("fid"), "kid": ev.get("kid"),
                         "invariance": sym.get("invariance"), "equivariance_error": sym["equivariance_error"],
                         "parameters": ev["parameters"], "seconds_this_call": round(time.perf_counter() - t, 1)})
    results["runs"] = runs

    group = groups.get(base.symmetry.group)
    reference = load_images(base.data.name, base.fid.split).subset(base.fid.n, seed=1).images
    results["invariance_floor"] = invariance_score(reference, group)  # real, invariant data at the same N

    toy = []
    for method in args.toy_methods:
        cfg = job(args.toy_config, [f"symmetry.method={method}"], f"toy-upright-{method}")
        sym = final(run_spd(cfg), "spd-symmetry")
        toy.append({"method": method, "shares": sym["shares"], "equivariance_error": sym["equivariance_error"]})
    results["toy"] = toy
    save_results(args.name, results, table(results))


def table(results: dict) -> str:
    lines = [f"c4-mnist, {results['steps']} steps x {results['batch_size']} images for every method; FID and "
             f"invariance at N = {results['fid_n']} (floor of the invariance score for real rotated-MNIST test "
             f"images at this N: {results['invariance_floor']:.2f}).", "",
             "| images | method | parameters | FID | KID | invariance score | equivariance error |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in results["runs"]:
        fid = f"{r['fid']:.1f}" if r["fid"] is not None else "-"
        kid = f"{r['kid']:.4f}" if r["kid"] is not None else "-"
        inv = f"{r['invariance']:.2f}" if r["invariance"] is not None else "-"
        lines.append(f"| {r['size']:,} | {r['method']} | {r['parameters']:,} | {fid} | {kid} | {inv} | "
                     f"{r['equivariance_error']:.1e} |")
    lines += ["", "Cost (median of 5 interleaved rounds, batch 64; sampling cost is per denoiser call; FLOPs per "
              "image from torch's counter):", "",
              "| method | parameters | MFLOP / image, training | MFLOP / image, denoiser call | s / training step "
              "| s / denoiser call | sampling cost vs none |", "|---|---:|---:|---:|---:|---:|---:|"]
    for method, c in results["cost"].items():
        ratio = f"{c['sample_cost_vs_none']:.2f}x" if c["sample_cost_vs_none"] else "-"
        lines.append(f"| {method} | {c.get('parameters', 0):,} | {c.get('train_flops_per_image', 0) / 1e6:.0f} | "
                     f"{c.get('sample_flops_per_image', 0) / 1e6:.0f} | {c['train_step_s']:.3f} | "
                     f"{c['denoiser_call_s']:.3f} | {ratio} |")
    if results.get("toy"):
        names = list(results["toy"][0]["shares"])
        lines += ["", "Single-orientation toy set (512 upright binarised digits): share of samples per orientation "
                  "(an invariant model: 25% each)", "", "| method | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        for r in results["toy"]:
            lines.append(f"| {r['method']} | " + " | ".join(f"{100 * r['shares'][n]:.0f}%" for n in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
