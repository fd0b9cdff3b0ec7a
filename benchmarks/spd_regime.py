"""Structure-preserving diffusion where the data size matters: rotated MNIST at 600 / 3,000 / 6,000 images.

First the regime (`--phase curve`): the plain UNet on the smallest and the largest set for
--curve-steps, every checkpoint scored on c4-mnist's validation split (FID at --curve-n) with the
near-copy rate of its samples against its own training images. The step budget to use is one
where 600 images are clearly worse than 6,000 (data, not steps, is the limit). A model that
copies a set smaller than the FID's N repeats images, which FID sees; at an N below the set's
size perfect copies look like real data, so --curve-n should exceed the smallest set.

Then (`--phase all`) every method at every size for --steps (same steps and batch), each
selected on validation among its checkpoints (every --every steps, FID at --curve-n: the same
argument holds for selection) and reported at the selected checkpoint: test FID (N = --test-n,
other sample seeds than validation's), Inv-FID (the same samples against the test set's group
orbit: every test image in every orientation) and the equivariance error of its sampling
denoiser, all in fp32. --seeds training seeds for none, fa and regular (at --regular-fields),
one for the others. Equal training FLOPs: each model is also selected among its checkpoints
within the FLOPs the plain model spends in --steps (frame averaging, at |G| times the FLOPs per
step, gets a quarter of the steps under C4; the last checkpoint within is scored too). Every run
is a resumable run folder under --out (runs/spd-regime/); rerunning continues. The results JSON
is rewritten after every scored run and is the record across checkouts: a rerun with the same
settings keeps its curve and runs and trains only the (method, size, seed) triples it lacks.
The cost table (parameters, FLOPs, seconds per training step and denoiser call of every method,
side by side) is measured once, before the first run; `--phase cost` measures it again.
Processes of the same command side by side (e.g. two with --threads 1 on 2 cores) share the
sweep: each claims a run folder before training it and merges the others' runs into the
results file under a lock.

    python benchmarks/spd_regime.py --phase curve
    python benchmarks/spd_regime.py --steps 4000 --seeds 3
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch
from matplotlib.ticker import PercentFormatter

sys.path.insert(0, str(Path(__file__).parent))
from common import HERE, command_line, commands, earlier, machine, save_results, stats  # noqa: E402
from spd import cost  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.data.images import load as load_images  # noqa: E402
from attndiff.diffusion import model  # noqa: E402
from attndiff.diffusion.sampling import evaluations  # noqa: E402
from attndiff.jobs.selection import best, candidates, score_checkpoint, score_checkpoints  # noqa: E402
from attndiff.jobs.spd import SPDJobConfig, run_spd  # noqa: E402
from attndiff.jobs.train import load_data, load_model  # noqa: E402
from attndiff.metrics import fid as fid_metric  # noqa: E402
from attndiff.report.figures import plt, save_figure  # noqa: E402
from attndiff.run import Run  # noqa: E402
from attndiff.symmetry import groups  # noqa: E402
from attndiff.symmetry.metrics import equivariance_error  # noqa: E402

METHODS = ("none", "augment", "wt", "regular", "fa", "reg")
SEEDED = ("none", "fa", "regular")
COST_FIELDS = (4, 6, 8)  # widths of the regular G-CNN in the cost table besides --regular-fields
# Rotated MNIST at 1% / 5% / 10% of 60,000 images (the summary of arXiv 2402.19369); Inv-FID and
# the equivariance error per method as the issue quotes them, without their data size
PAPER = {"sizes": [600, 3000, 6000], "fid": {"none": [5.97, 3.05, 3.47], "wt": [5.80, 3.34, 3.57],
                                              "fa": [5.42, 3.09, 2.83]},
         "inv_fid": {"none": 2.21, "wt": 2.20, "fa": 2.07}, "equivariance_error": {"none": 0.2997, "wt": 0.0004,
                                                                                  "fa": 0.0002}}
EXACT = ("wt", "regular", "fa")  # equivariant by construction
PLACES = ("first", "second", "third")  # the paper ranks three methods


def job(args, size: int, method: str, seed: int, steps: int, fields: int | None = None) -> SPDJobConfig:
    """The run of `method` (regular: at `fields`, default --regular-fields) on `size` images."""
    width = f"-f{fields or args.regular_fields}" if method == "regular" else ""
    name = f"{Path(args.config).stem}-n{size}-{method}{width}-s{seed}"
    sets = [*args.overrides, f"data.limit={size}", f"symmetry.method={method}", f"train.seed={seed}",
            f"train.steps={steps}", f'out="{args.out}/{name}"', "fid.n=0", "symmetry_metrics.invariance=false"]
    if method == "regular":
        sets.append(f"unet.channels={fields or args.regular_fields}")
    return config.load(SPDJobConfig, args.config, sets)


def validation(args, cfg: SPDJobConfig, upto: int, *, n: int | None = None, references=None) -> list[dict]:
    """Every --every steps up to `upto` (0: all): FID on the validation split (N = n, default the
    config's fid.n) and near-copies of the image sets in `references`."""
    return score_checkpoints(cfg.run_dir, every=args.every, upto=upto, dataset=cfg.data.name, split=args.fid.split,
                             n=n or args.fid.n, sample_steps=cfg.sample.steps, references=references)


def curve(args) -> dict:
    out = {}
    for size in (min(args.sizes), max(args.sizes)):
        cfg = job(args, size, "none", args.first_seed, args.curve_steps)
        run_spd(cfg)
        records = validation(args, cfg, 0, n=args.curve_n, references={"train": load_data(cfg.data).images})
        out[str(size)] = [{k: r[k] for k in ("step", "fid", "fid_n", "kid", "copy_train")} for r in records]
    return {"curve": out}


def test_images(cfg: SPDJobConfig):
    """The test split at the config's resolution."""
    return load_images(cfg.data.name, "test", resolution=cfg.data.resolution or None)


def orbit_features(cfg: SPDJobConfig, n: int):
    """Inception features of n images of the test set's group orbit (every image in every orientation)."""
    orbit = groups.get(cfg.symmetry.group).orbit(test_images(cfg).images)
    pick = torch.randperm(len(orbit), generator=torch.Generator().manual_seed(0))[:n]
    return fid_metric.features(orbit[pick], progress="orbit features")


def report(args, cfg: SPDJobConfig, chosen: dict, orbit) -> dict:
    """Test FID, Inv-FID (the same samples against the orbit's features) and the fp32
    equivariance error of a selected checkpoint."""
    c = next(c for c in candidates(cfg.run_dir) if c.path.name == chosen["checkpoint"])
    test = score_checkpoint(Run(cfg.run_dir), c, dataset=cfg.data.name, split="test", n=args.test_n,
                            sample_steps=cfg.sample.steps, fid_against={"orbit": orbit})
    loaded = load_model(c.path, precision="fp32")
    probe = test_images(cfg).images[:16]
    error = equivariance_error(loaded.denoiser, probe, groups.get(cfg.symmetry.group))
    return {"step": c.step, "valid_fid": chosen["fid"], "test_fid": test["fid"], "inv_fid": test["fid_orbit"],
            "equivariance_error": error}


@contextmanager
def locked(path: Path):
    """An exclusive lock on `path` (created if absent) between the workers of one sweep."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def process_id(pid: int) -> str:
    """`pid` and, where /proc has it, the process's start time (clock ticks after boot): a pid the
    system hands to another process later, e.g. in the next session, is then not taken for the
    claimer. '' when no such process runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ""
    except PermissionError:  # alive, another user's
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return str(pid)
    return f"{pid}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, counted after the command's name


def running(claim: str) -> bool:
    """Whether the process a claim names still runs (a claim without a start time: any process with its pid)."""
    pid, _, start = claim.partition(":")
    now = process_id(int(pid))
    return bool(now) and (now == claim or not start)


@contextmanager
def claimed(run_dir: Path, lock: Path):
    """True unless a live process holds `run_dir` (workers of the same sweep side by side each train
    other runs); a claim is dropped when its block ends, and a dead process's claim is taken over."""
    path = run_dir.parent / f"{run_dir.name}.claim"
    me = process_id(os.getpid())
    with locked(lock):
        holder = path.read_text().strip() if path.exists() else ""
        mine = not holder or holder == me or not running(holder)
        if mine:
            path.write_text(me)
    try:
        yield mine
    finally:
        if mine:
            path.unlink(missing_ok=True)


def key(run: dict) -> tuple:
    return run["method"], run["size"], run["seed"]


def compare(args, results: dict, save, sync) -> None:
    """Every (method, size, seed) not in `results` yet trained, scored and saved; `sync()` adds the
    runs other workers of this sweep saved meanwhile (--threads 1 in two processes side by side)."""
    if results.setdefault("steps", args.steps) != args.steps:
        raise SystemExit(f"error: the results file holds {results['steps']}-step runs, not --steps {args.steps}: "
                         "rerun with its settings, or with --name")
    orbit = orbit_features(job(args, args.sizes[0], "none", 0, args.steps), args.test_n)
    costs = results.get("cost", {})
    if any(m not in costs for m in args.methods) or costs.get("regular", {}).get("fields") != args.regular_fields:
        measure_cost(args, results)
    per_image = {m: c["train_flops_per_image"] for m, c in results["cost"].items()}
    plain = per_image.get("none", min(per_image.values()))
    runs = results.setdefault("runs", [])
    for r in runs:  # validation curves of runs recorded before the JSON kept them (cached in the run folders)
        if "valid" not in r:
            cfg = job(args, r["size"], r["method"], r["seed"], args.steps)
            r["valid"] = curve_points(validation(args, cfg, args.steps, n=args.curve_n))
    for size in args.sizes:  # a size complete with its seeds before the next: the smallest (the goal line's) first
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for method in (m for m in args.methods if seed == args.first_seed or m in SEEDED):
                cfg = job(args, size, method, seed, args.steps)
                with claimed(cfg.run_dir, args.lock) as mine:
                    sync()
                    if not mine or (method, size, seed) in {key(r) for r in runs}:
                        continue
                    run_spd(cfg)
                    records = validation(args, cfg, args.steps, n=args.curve_n)
                    within = equal_flops(args, cfg, records, args.steps * plain / per_image[method])
                    entry = {"method": method, "size": size, "seed": seed,
                             "equal_steps": report(args, cfg, best(records), orbit),
                             "equal_flops": report(args, cfg, best(within), orbit),
                             "valid": curve_points(records), "command": command_line(), "machine": machine()}
                    runs.append(entry)
                    print(entry)
                    save()


def measure_cost(args, results: dict) -> None:
    """The cost table: every method and COST_FIELDS widths of regular, side by side in one process
    (alone on the machine: `--phase cost` measures it again)."""
    cfgs = {m: job(args, args.sizes[0], m, 0, args.steps) for m in METHODS}
    widths = [f for f in COST_FIELDS if f != args.regular_fields]
    cfgs |= {f"regular-f{f}": job(args, args.sizes[0], "regular", 0, args.steps, fields=f) for f in widths}
    results["cost"] = cost(cfgs)
    for f in (args.regular_fields, *widths):
        results["cost"]["regular" if f == args.regular_fields else f"regular-f{f}"]["fields"] = f
    results["cost_machine"] = {**machine(), "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def merge(results: dict, saved: dict) -> None:
    """Add to `results` what other workers of the sweep saved meanwhile (`saved`: the results file):
    their runs, and the cost table if measured later than this process's (`--phase cost`)."""
    if "runs" in results:
        have = {key(r) for r in results["runs"]}
        results["runs"] += [r for r in saved.get("runs", []) if key(r) not in have]
    if "cost" in saved and measured(saved) > measured(results):
        results["cost"], results["cost_machine"] = saved["cost"], saved["cost_machine"]


def reported(args, results: dict) -> list[str]:
    """The methods the tables and figures show: --methods and every method with runs in the results
    (a worker started with fewer --methods still writes every method's rows), in that order."""
    have = {r["method"] for r in results.get("runs", [])}
    return [*args.methods, *(m for m in METHODS if m in have and m not in args.methods)]


def measured(results: dict) -> str:
    """When the cost table was measured ("" if before the time was kept, or not measured)."""
    return results.get("cost_machine", {}).get("measured", "")


def equal_flops(args, cfg: SPDJobConfig, records: list[dict], steps: float) -> list[dict]:
    """The validation records within `steps` (the plain model's training FLOPs), with the last
    checkpoint within them scored too when it is not a multiple of --every (frame averaging under
    C4: its 3,000-step checkpoint of 12,000 beside the 2,000-step one)."""
    found = [c for c in candidates(cfg.run_dir) if c.step <= steps]
    within = [r for r in records if r["step"] <= steps]
    if found and found[-1].step not in {r["step"] for r in within}:
        within.append(score_checkpoint(Run(cfg.run_dir), found[-1], dataset=cfg.data.name, split=args.fid.split,
                                       n=args.curve_n or args.fid.n, sample_steps=cfg.sample.steps))
    return within or records[:1]


def curve_points(records: list[dict]) -> list[list]:
    """[step, validation FID] of every scored checkpoint."""
    return [[r["step"], round(r["fid"], 3)] for r in records]


def summary(runs: list[dict], budget: str) -> dict:
    """Per method/size, over seeds (common.stats: mean, std, n, values): the test FID, Inv-FID and
    equivariance error at the checkpoint `budget` ("equal_steps", "equal_flops") selected, or for
    budget "last" the validation FID of the last checkpoint (no selection)."""
    out = {}
    for r in runs:
        if budget == "last":
            values = {"valid_fid": r["valid"][-1][1]}
        else:
            b = r[budget]
            values = {"test_fid": b["test_fid"], "inv_fid": b["inv_fid"], "error": b["equivariance_error"]}
        cell = out.setdefault(f"{r['method']}/{r['size']}", {k: [] for k in values})
        for k, v in values.items():
            cell[k].append(v)
    return {k: {m: stats(v) for m, v in cell.items()} for k, cell in out.items()}


def verdict(a: dict, b: dict) -> str:
    """How two FIDs (summary cells of one metric) differ, against the spread between seeds (max -
    min over each one's seeds): a finding only when the gap is larger than both spreads."""
    gap = a["mean"] - b["mean"]
    if min(a["n"], b["n"]) < 2:
        return f"{gap:+.1f} FID (one seed on a side: a probe)"
    spread = max(max(c["values"]) - min(c["values"]) for c in (a, b))
    return (f"{gap:+.1f} FID ({a['n']} and {b['n']} seeds, spread between seeds up to {spread:.1f}: "
            + ("a finding" if abs(gap) > spread else "within the spread") + ")")


def fmt(s: dict | None, spec: str = ".1f") -> str:
    if not s:
        return "-"
    return format(s["mean"], spec) + (f" ± {format(s['std'], spec)}" if s["std"] is not None else "")


def curve_figure(results: dict, path: Path) -> None:
    """The plain UNet's validation FID and near-copies of its training images against steps, per size."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (size, rows) in enumerate(results["curve"].items()):
        steps = [r["step"] for r in rows]
        ax.plot(steps, [r["fid"] for r in rows], "o-", ms=3, color=f"C{i}", label=f"{int(size):,} images")
        if "copy_train" in rows[0]:
            bx.plot(steps, [r["copy_train"] for r in rows], "o-", ms=3, color=f"C{i}")
    ax.set_ylabel(f"validation FID (N = {rows[0]['fid_n']})")
    bx.set_ylabel("near-copies of its training images")
    bx.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(fontsize=8)
    for a in (ax, bx):
        a.set_xlabel("training steps")
        a.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def method_name(results: dict, method: str) -> str:
    return f"regular ({results['regular_fields']} fields)" if method == "regular" else method


def sweep_figure(args, results: dict, path: Path) -> None:
    """Validation FID against steps of every method (mean over seeds, shaded from the lowest to the
    highest seed), one panel per data size."""
    fig, axes = plt.subplots(1, len(args.sizes), figsize=(4 * len(args.sizes), 3.4), sharey=True)
    for ax, size in zip(axes, args.sizes):
        for i, m in enumerate(args.methods):
            curves = [dict(r["valid"]) for r in results["runs"] if (r["method"], r["size"]) == (m, size)
                      and "valid" in r]
            if curves:
                steps = sorted(set.intersection(*(set(c) for c in curves)))
                seeds = f" ({len(curves)} seeds)" if len(curves) > 1 else ""
                ax.plot(steps, [statistics.fmean(c[t] for c in curves) for t in steps], "o-", ms=3, color=f"C{i}",
                        label=method_name(results, m) + seeds)
                if len(curves) > 1:  # the spread between seeds
                    ax.fill_between(steps, [min(c[t] for c in curves) for t in steps],
                                    [max(c[t] for c in curves) for t in steps], color=f"C{i}", alpha=0.15, lw=0)
        ax.set_title(f"{size:,} images")
        ax.set_xlabel("training steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"validation FID (N = {results['select_n']})")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def samples_figure(args, results: dict, size: int, path: Path) -> bool:
    """The test samples of each method's first seed on `size` images at its selected checkpoint
    (the same sample seeds for every method), side by side; False (nothing written) unless every
    such run folder is here."""
    grids = []
    for m in args.methods:
        run = next((r for r in results["runs"] if (r["method"], r["size"], r["seed"]) == (m, size, args.first_seed)),
                   None)
        if run:
            cfg = job(args, size, m, args.first_seed, results["steps"])
            step = run["equal_steps"]["step"]
            found = [c for c in candidates(cfg.run_dir) if c.step == step]
            grid = found and Run(cfg.run_dir).samples / f"select-test-{found[0].path.stem}.png"
            if not grid or not grid.exists():
                return False
            grids.append((f"{method_name(results, m)}\nstep {step}, test FID {run['equal_steps']['test_fid']:.1f}",
                          plt.imread(grid)))
    if not grids:
        return False
    cols = min(3, len(grids))
    rows = -(-len(grids) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, image) in zip(axes.flat, grids):
        ax.imshow(image, cmap="gray")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def table(args, results: dict) -> str:
    lines = []
    if "curve" in results:
        rows = next(iter(results["curve"].values()))
        copies = "copy_train" in rows[0]
        lines += [f"Plain UNet, validation FID (N = {rows[0]['fid_n']}) against steps"
                  + (" (below: the share of its samples that are near-copies of its training images)" if copies
                     else "") + ":", "",
                  "| images | " + " | ".join(str(r["step"]) for r in rows) + " |", "|---:|" + "---:|" * len(rows)]
        for size, rows in results["curve"].items():
            lines.append(f"| {int(size):,} | " + " | ".join(f"{r['fid']:.1f}" for r in rows) + " |")
            if copies:
                lines.append("| copies | " + " | ".join(f"{r['copy_train']:.0%}" for r in rows) + " |")
    if "runs" in results:
        for budget in ("equal_steps", "equal_flops"):
            s = summary(results["runs"], budget)
            lines += ["", f"{budget.replace('_', ' ')} ({results['steps']} steps of the plain model): "
                      f"test FID / Inv-FID (N = {args.test_n}, fp32, mean ± std over seeds where several) and "
                      "the equivariance error, at the checkpoint selected on validation "
                      f"(FID at N = {results['select_n']}):", "",
                      "| method | " + " | ".join(f"{n:,} images" for n in args.sizes) + " | equivariance error |",
                      "|---|" + "---:|" * (len(args.sizes) + 1)]
            for m in args.methods:
                cells = [f"{fmt(s.get(f'{m}/{n}', {}).get('test_fid'))} / {fmt(s.get(f'{m}/{n}', {}).get('inv_fid'))}"
                         for n in args.sizes]
                error = fmt(s.get(f"{m}/{args.sizes[-1]}", {}).get("error"), ".1e")
                lines.append(f"| {method_name(results, m)} | " + " | ".join(cells) + f" | {error} |")
        last = summary(results["runs"], "last")
        lines += ["", f"At the last checkpoint (step {results['steps']}, no selection): validation FID (N = "
                  f"{results['select_n']}, fp32, mean ± std over seeds where several):", "",
                  "| method | " + " | ".join(f"{n:,} images" for n in args.sizes) + " |",
                  "|---|" + "---:|" * len(args.sizes)]
        for m in args.methods:
            lines.append(f"| {method_name(results, m)} | "
                         + " | ".join(fmt(last.get(f"{m}/{n}", {}).get("valid_fid")) for n in args.sizes) + " |")
        cfg = job(args, args.sizes[0], "none", args.first_seed, results["steps"])
        batch, calls = cfg.train.batch_size, evaluations(cfg.sample.steps, stochastic=cfg.sample.stochastic)
        lines += ["", "Cost (fp32): FLOPs per image (torch's counter) of a training step and of one call of the "
                  "sampling denoiser (frame averaging: |G| passes), and medians of 5 interleaved rounds of a training "
                  f"step and a denoiser call on a batch of {batch}, every method in one process"
                  + (f" ({results['cost_machine']['processor']})" if "cost_machine" in results else "")
                  + f"; sampling images/s: the batch over {calls} denoiser calls (the sampler's):", "",
                  "| method | parameters | MFLOP, training | MFLOP, denoiser call | network passes per sample | "
                  "training step (s) | denoiser call (s) | sampling images/s | sampling cost / none's | / fa's |",
                  "|---|" + "---:|" * 9]
        fa = results["cost"].get("fa", {}).get("denoiser_call_s")
        averaged = model.RECIPES["fa"].sampler
        for m, c in results["cost"].items():
            method = m.split("-")[0]
            label = f"{method} ({c['fields']} fields)" if "fields" in c else m
            passes = calls * (len(groups.get(cfg.symmetry.group)) if model.RECIPES[method].sampler is averaged else 1)
            lines.append(f"| {label} | {c['parameters']:,} | {c['train_flops_per_image'] / 1e6:.0f} | "
                         f"{c['sample_flops_per_image'] / 1e6:.0f} | {passes} | {c['train_step_s']:.3f} | "
                         f"{c['denoiser_call_s']:.3f} | {batch / (calls * c['denoiser_call_s']):.0f} | "
                         f"{c['sample_cost_vs_none']:.2f} | {c['denoiser_call_s'] / fa:.2f} |")
        steps = summary(results["runs"], "equal_steps")
        lines += ["", *paper_table(steps), "", *goal(args, results, steps), "",
                  *differences(args, results, steps, last)]
    return "\n".join(lines)


def ranks(fids: dict[str, float]) -> dict[str, int]:
    order = sorted(fids, key=fids.get)
    return {m: order.index(m) + 1 for m in fids}


def paper_table(s: dict) -> list[str]:
    """The paper's FIDs beside this project's test FIDs (equal steps), with each one's ranking of the
    methods the paper ran, per data size."""
    methods = list(PAPER["fid"])
    lines = ["Side by side with the paper (rotated MNIST at 28 px, its own network and training: the absolute "
             "values differ, the rankings compare; rank 1 = best FID among "
             f"{', '.join(methods)} at that size; ours: test FID at equal steps, fp32, mean over seeds):", "",
             "| method | " + " | ".join(f"paper, {n:,} | ours, {n:,}" for n in PAPER["sizes"])
             + " | paper: Inv-FID / equivariance error (size not stated) | ours, 6,000 |", "|---|" + "---:|" * 8]
    ours = {n: {m: s[f"{m}/{n}"]["test_fid"]["mean"] for m in methods if f"{m}/{n}" in s} for n in PAPER["sizes"]}
    theirs = {n: {m: PAPER["fid"][m][i] for m in methods} for i, n in enumerate(PAPER["sizes"])}
    for m in methods:
        cells = []
        for n in PAPER["sizes"]:
            ours_n = ours[n] if len(ours[n]) == len(methods) else {}
            cells += [f"{theirs[n][m]:.2f} ({ranks(theirs[n])[m]})",
                      f"{ours[n][m]:.1f}" + (f" ({ranks(ours_n)[m]})" if ours_n else "") if m in ours[n] else "-"]
        big = s.get(f"{m}/{PAPER['sizes'][-1]}")
        mine = f"{big['inv_fid']['mean']:.1f} / {big['error']['mean']:.1e}" if big else "-"
        lines.append(f"| {m} | " + " | ".join(cells)
                     + f" | {PAPER['inv_fid'][m]:.2f} / {PAPER['equivariance_error'][m]:g} | {mine} |")
    agree = [f"{n:,} images: {ranking(theirs[n], ours[n])}" for n in PAPER["sizes"] if len(ours[n]) == len(methods)]
    return lines + (["", "Rankings, best first (paper; ours):", "", *(f"- {a}" for a in agree)] if agree else [])


def ranking(theirs: dict[str, float], ours: dict[str, float]) -> str:
    """Both orders of the methods, best first, and the places where they agree."""
    a, b = sorted(theirs, key=theirs.get), sorted(ours, key=ours.get)
    same = [f"{m} {PLACES[i]}" for i, m in enumerate(a) if b[i] == m]
    agreement = ("the same order" if len(same) == len(a) else f"agree on {', '.join(same)}" if same
                 else "no place agrees")
    return f"{' < '.join(a)}; {' < '.join(b)}: {agreement}"


def goal(args, results: dict, s: dict) -> list[str]:
    """The issue's goal: an exact method within 5% of frame averaging's FID at half its sampling cost or
    less; `s` is the equal-steps summary."""
    c = results["cost"]
    lines = []
    for m in (m for m in EXACT if m != "fa" and m in c):
        share = c[m]["denoiser_call_s"] / c["fa"]["denoiser_call_s"]
        gaps = [f"{n:,} images {s[f'{m}/{n}']['test_fid']['mean'] / s[f'fa/{n}']['test_fid']['mean'] - 1:+.1%}, "
                + verdict(s[f"{m}/{n}"]["test_fid"], s[f"fa/{n}"]["test_fid"])
                for n in args.sizes if f"{m}/{n}" in s and f"fa/{n}" in s]
        lines.append(f"- {method_name(results, m)}: {share:.2f}x frame averaging's sampling time; test FID "
                     "against frame averaging's (equal steps): " + (", ".join(gaps) if gaps else "not run yet"))
    return ["Goal: an exact method within 5% of frame averaging's FID at half its sampling cost or less:", "",
            *lines]


def differences(args, results: dict, s: dict, last: dict) -> list[str]:
    """Each method against the plain model at each size, and each method's smallest set against its
    largest (selected, and at the last checkpoint), judged against the spread between seeds; `s` is the
    equal-steps summary, `last` the last checkpoints'."""
    small, large = args.sizes[0], args.sizes[-1]
    lines = ["Differences in test FID (equal steps; negative = better), each against the spread between seeds:",
             "", "- against the plain model:"]
    for m in (m for m in args.methods if m != "none"):
        cells = [f"{n:,} images {verdict(s[f'{m}/{n}']['test_fid'], s[f'none/{n}']['test_fid'])}"
                 for n in args.sizes if f"{m}/{n}" in s and f"none/{n}" in s]
        if cells:
            lines.append(f"  - {method_name(results, m)}: " + "; ".join(cells))
    lines.append(f"- {small:,} images against {large:,} (the data size):")
    for m in (m for m in args.methods if f"{m}/{small}" in s and f"{m}/{large}" in s):
        lines.append(f"  - {method_name(results, m)}: "
                     + verdict(s[f"{m}/{small}"]["test_fid"], s[f"{m}/{large}"]["test_fid"]))
    lines.append(f"- {small:,} images against {large:,} at the last checkpoint (validation FID, no selection):")
    for m in (m for m in args.methods if f"{m}/{small}" in last and f"{m}/{large}" in last):
        lines.append(f"  - {method_name(results, m)}: "
                     + verdict(last[f"{m}/{small}"]["valid_fid"], last[f"{m}/{large}"]["valid_fid"]))
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/spd/c4-mnist-regime.toml")
    p.add_argument("--phase", choices=("curve", "cost", "all"), default="all",
                   help="curve: the plain UNet's curve only; cost: measure the cost table again (run it alone on "
                   "the machine; stop or pause other workers); all: the curve, then the sweep")
    p.add_argument("--sizes", type=int, nargs="+", default=[600, 3000, 6000])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--curve-steps", type=int, default=8000)
    p.add_argument("--curve-n", type=int, default=None, help="the curve's FID N (default: the config's fid.n)")
    p.add_argument("--steps", type=int, default=4000, help="training steps of every method (after the curve)")
    p.add_argument("--every", type=int, default=1000, help="score checkpoints at multiples of this many steps")
    p.add_argument("--test-n", type=int, default=500)
    p.add_argument("--seeds", type=int, default=3, help="training seeds for none, fa and regular")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--regular-fields", type=int, default=4,
                   help="unet.channels (fields) of the regular G-CNN (4: the plain UNet's FLOPs at 16 channels)")
    p.add_argument("--name", default=None)
    p.add_argument("--out", default="runs/spd-regime", help="folder of the run folders")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads (default 2). Two processes of the same command with --threads 1 train "
                   "other runs side by side and share the results file (a probe on 2 cores: 1.14-1.39x the training "
                   "steps/s of one process at 2 threads); the cost table is measured once, by a process alone")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.fid = config.load(SPDJobConfig, args.config, args.overrides).fid
    name = args.name or f"spd-regime-{Path(args.config).stem}"
    same = {"config": args.config, "sizes": args.sizes, "curve_steps": args.curve_steps, "overrides": args.overrides}
    if args.curve_n:  # absent from files measured before it existed
        same["curve_n"] = args.curve_n
    old = earlier(name, same)
    # the curve does not depend on these; the sweep selects checkpoints at the curve's N
    sweep = {"test_n": args.test_n, "regular_fields": args.regular_fields, "select_n": args.curve_n or args.fid.n}
    depends = {"test_n": old.get("runs"), "select_n": old.get("runs"),
               "regular_fields": [r for r in old.get("runs", []) if r["method"] == "regular"]}
    differ = [k for k, v in sweep.items() if depends[k] and old.get(k) != v]
    if differ:
        raise SystemExit(f"error: results/{name}.json holds runs measured with another {', '.join(differ)}: rerun "
                         "with its settings to add to it, or with --name to start another results file")
    kept = ("curve", "steps", "cost", "cost_machine", "runs")
    results = {**same, **sweep, "paper": PAPER, **{k: old[k] for k in kept if k in old}}
    results["commands"] = commands(old)

    args.lock = Path(args.out) / f"{name}.lock"
    path = HERE / "results" / f"{name}.json"

    def take() -> None:
        """Take in what other workers of this sweep saved (call under the lock)."""
        if path.exists():
            merge(results, json.loads(path.read_text()))

    def sync() -> None:
        with locked(args.lock):
            take()

    def save() -> None:
        with locked(args.lock):
            take()
            write()

    def write() -> None:
        shown = argparse.Namespace(**{**vars(args), "methods": reported(args, results)})
        text = table(shown, results)
        if "curve" in results:
            curve_figure(results, HERE / "results" / f"{name}.png")
            text += f"\n\n![the plain UNet's curves](results/{name}.png)"
        if any("valid" in r for r in results.get("runs", [])):
            sweep_figure(shown, results, HERE / "results" / f"{name}-sweep.png")
            text += f"\n\n![every method's validation FID against steps](results/{name}-sweep.png)"
        small, grids = min(args.sizes), HERE / "results" / f"{name}-samples.png"
        if "runs" in results and (samples_figure(shown, results, small, grids) or grids.exists()):
            text += (f"\n\nTest samples on {small:,} images (first seed, selected checkpoint, the same sample "
                     f"seeds for every method):\n\n![samples](results/{name}-samples.png)")
        save_results(name, results, text)

    if "curve" not in results:
        results.update(curve(args))
    if args.phase == "cost":
        measure_cost(args, results)
    if args.phase == "all":
        compare(args, results, save, sync)
    save()


if __name__ == "__main__":
    main()
