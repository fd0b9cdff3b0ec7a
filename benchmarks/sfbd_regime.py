"""SFBD where data, not compute, is the limit: every model at its best checkpoint on validation.

First the regime (`--phase curve`): clean-only on the clean part alone, trained for
--curve-steps with every checkpoint kept, each scored on the validation split (FID against
validation images, near-copies of the clean images). Past the step where its validation FID
stops improving, more training cannot help it: data is the limit.

Then (`--phase all`, after the curve) SFBD and the four baselines at one training budget (--steps, which is
SFBD's pretraining plus its rounds), every model scored on validation at each --every steps and
reported at its best checkpoint with a fresh FID on the test split (other sample seeds, N =
--test-n). SFBD and clean-only run for --seeds training seeds (same clean/noisy split and frozen
noise, different initialisation, data order and training noise), first, the rest for the first
seed after them; each run is scored as soon as it is trained. Near
copies are counted against the clean part, the held-back originals of the noisy images and, for
SFBD, every denoised set it trained on. The baselines also train on to the budget with SFBD's
backward network evaluations added (`equal evaluations`), and are selected again within it.
Everything is a resumable run folder under runs/regime/; rerunning continues. The results JSON
is rewritten after every scored run and is the record across machines: a rerun keeps the curve
and every (method, seed) it already holds and trains only the rest (a fresh checkout has no
runs/ folder, so `--seeds 3` after `--seeds 1` adds seeds 1 and 2 there).

    python benchmarks/sfbd_regime.py --phase curve
    python benchmarks/sfbd_regime.py --seeds 3
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import HERE, command_line, commands, earlier, grids_figure, machine, save_results, stats  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.diffusion.sampling import evaluations  # noqa: E402
from attndiff.diffusion.unet import count_parameters  # noqa: E402
from attndiff.fsutil import write_text  # noqa: E402
from attndiff.jobs.selection import best, candidates, score_checkpoint, score_checkpoints  # noqa: E402
from attndiff.jobs.sfbd import SFBDJobConfig, load_split, read_denoised, run_sfbd  # noqa: E402
from attndiff.jobs.sfbd_baselines import run_baseline, run_folder  # noqa: E402
from attndiff.jobs.train import model_spec  # noqa: E402
from attndiff.metrics import fid as fid_metric  # noqa: E402
from attndiff.report.figures import plt, save_figure  # noqa: E402
from attndiff.run import Run  # noqa: E402
from attndiff.sfbd.baselines import BASELINES  # noqa: E402

METHODS = ("sfbd", *BASELINES)
# CIFAR-10 at noise std 0.2 on [0, 1] (the summary of the papers): FID
PAPER = {"daras-2024, 10% clean": {"clean-only": 17.3, "clean+noisy (ambient)": 2.81, "oracle": 1.99},
         "sfbd": {"4% clean": 6.31, "10% clean": 3.58}}


def job(args, seed: int, method: str = "sfbd", **sets) -> SFBDJobConfig:
    """A run of the comparison. Its own FID evaluations are off: `validation` scores checkpoints
    with the config's [fid] section instead, so nothing is sampled and scored twice. --tag names
    SFBD's runs only: the baselines' training does not depend on SFBD's settings (a larger step
    budget resumes them, the learning rate being constant after warm-up)."""
    name = f"{Path(args.config).stem}-c{args.fraction:g}-s{seed}" + (args.tag if method == "sfbd" else "")
    overrides = [f"sfbd.clean_fraction={args.fraction}", f"train.seed={seed}", "sfbd.keep_denoised=true",
                 f'out="runs/regime/{name}"', *args.overrides, *(f"{k}={v}" for k, v in sets.items()),
                 "fid.n=0", "sfbd.denoised_fid_n=0"]
    return config.load(SFBDJobConfig, args.config, overrides)


def run_dir(args, seed: int, method: str) -> Path:
    cfg = job(args, seed, method)
    return cfg.run_dir if method == "sfbd" else run_folder(cfg, method)


def references(cfg: SFBDJobConfig, method: str) -> dict[str, torch.Tensor]:
    """What a model's samples are checked for copies of: the clean part, the held-back originals
    of the noisy images and, for SFBD, every denoised set it fine-tuned on."""
    split = load_split(cfg)
    refs = {"clean": split.clean.images, "originals": split.originals.images}
    if method == "sfbd":
        refs["denoised"] = torch.cat([read_denoised(cfg.run_dir, k, split, cfg.sfbd.chunk)
                                      for k in range(1, cfg.sfbd.rounds + 1)])
    return refs


def validation(args, cfg, seed: int, method: str, upto: int, refs: dict[str, torch.Tensor]) -> list[dict]:
    """Every --every steps up to `upto`: FID on the config's [fid] split and N, and copies of `refs`."""
    return score_checkpoints(run_dir(args, seed, method), every=args.every, upto=upto, dataset=cfg.data.name,
                             split=args.fid.split, n=args.fid.n, sample_steps=cfg.sample.steps, references=refs)


def test_score(args, cfg, seed: int, method: str, chosen: dict, refs: dict[str, torch.Tensor]) -> dict:
    folder = run_dir(args, seed, method)
    c = next(c for c in candidates(folder) if c.path.name == chosen["checkpoint"])
    return score_checkpoint(Run(folder), c, dataset=cfg.data.name, split="test", n=args.test_n,
                            sample_steps=cfg.sample.steps, references=refs)


def budgets(cfg: SFBDJobConfig, every: int) -> dict[str, int]:
    """Training steps of the comparison: SFBD's, and the steps whose training evaluations (about
    3 network evaluations per image: forward and backward) add up to SFBD's backward step too."""
    split_noisy = len(load_split(cfg).noisy)
    nfe = evaluations(cfg.sfbd.backward_steps, stochastic=cfg.sfbd.stochastic, scheme=cfg.sfbd.backward_scheme)
    backward = cfg.sfbd.rounds * split_noisy * nfe
    extra = math.ceil(backward / (3 * cfg.train.batch_size) / every) * every
    return {"steps": cfg.total_steps, "equal_evaluations": cfg.total_steps + extra, "backward_evaluations": backward,
            "backward_nfe_per_image": nfe}


def curve(args) -> dict:
    cfg = job(args, args.first_seed, "clean-only", **{"train.steps": args.curve_steps, "sfbd.rounds": 0})
    run_baseline(cfg, "clean-only")
    records = validation(args, cfg, args.first_seed, "clean-only", 0, references(cfg, "clean-only"))
    clean = load_split(cfg).clean
    settings = {"dataset": cfg.data.name, "subset": cfg.data.limit, "batch": cfg.train.batch_size,
                "parameters": count_parameters(model_spec(cfg, clean.shape).new_net()), "lr": cfg.train.lr,
                "sample_steps": cfg.sample.steps, "split": args.fid.split, "resolution": clean.shape[-1]}
    keys = ("step", "fid", "fid_n", "copy_clean", "copy_originals")
    return {"clean_only_curve": [{k: r[k] for k in keys} for r in records], "clean_images": len(clean),
            "settings": settings}


def plan(args) -> list[tuple[int, str]]:
    """(seed, method) in the order they run: SFBD's seeds, then clean-only's (the comparison the
    benchmark is about), then the other baselines on the first seed."""
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    order = [(s, m) for m in ("sfbd", "clean-only") for s in seeds]
    order += [(args.first_seed, m) for m in BASELINES if m != "clean-only"]
    return [(s, m) for s, m in order if m in args.methods]


def train(args, seed: int, method: str, budget: dict) -> None:
    if method == "sfbd":
        run_sfbd(job(args, seed))
    else:
        run_baseline(job(args, seed, method, **{"train.steps": budget["equal_evaluations"], "sfbd.rounds": 0}), method)


def compare(args, results: dict, save) -> None:
    """Each run not in `results` yet trained, then scored and saved (so a stopped benchmark keeps
    its finished runs' scores, and a later one, here or on another machine, adds the rest)."""
    budget = budgets(job(args, args.first_seed), args.every)
    if results.setdefault("budget", budget) != budget:
        raise SystemExit(f"error: the step budget {budget} differs from the results file's {results['budget']}: "
                         "rerun with --name to start another results file")
    runs = results.setdefault("runs", [])
    for seed, method in plan(args):
        if any(r["method"] == method and r["seed"] == seed for r in runs):
            continue
        train(args, seed, method, budget)
        cfg = job(args, seed, method)
        entry = {"method": method, "seed": seed, "command": command_line(), "machine": machine()}
        refs = references(cfg, method)
        for limit in ("steps", "equal_evaluations") if method != "sfbd" else ("steps",):
            records = validation(args, cfg, seed, method, budget[limit], refs)
            chosen = best(records)
            entry[limit] = {"best": chosen, "test": test_score(args, cfg, seed, method, chosen, refs),
                            "curve": [{k: r[k] for k in ("step", "fid")} for r in records]}
        runs.append(entry)
        save()
    results.update(ceilings(args, job(args, args.first_seed), results))


def ceilings(args, cfg: SFBDJobConfig, results: dict) -> dict:
    """The test FID (same reference, same N as the models) of what the models learn from: the
    clean part itself (repeated to N: a model that copies it perfectly), the held-back originals
    of the noisy part (the oracle's data; the same images as the denoised sets' first N) and
    each denoised set. Kept in the results file and beside the first seed's SFBD run, and not
    computed again on a rerun."""
    split, n = load_split(cfg), args.test_n
    cache = Path(cfg.run_dir) / f"ceilings-test-n{n}.json"
    kept = {k: results[k] for k in ("clean_part_fid", "originals_fid", "denoised_fid") if results.get(k)}
    out = json.loads(cache.read_text()) if cache.exists() else kept
    if "clean_part_fid" not in out:
        clean = split.clean.images.repeat(math.ceil(n / len(split.clean)), 1, 1, 1)[:n]
        out["clean_part_fid"] = fid_metric.fid(clean, cfg.data.name, "test", n, progress=False)["fid"]
        out["originals_fid"] = fid_metric.fid(split.originals.images[:n], cfg.data.name, "test", n,
                                              progress=False)["fid"]
    if "sfbd" in args.methods and len(out.get("denoised_fid", [])) != cfg.sfbd.rounds:
        out["denoised_fid"] = [fid_metric.fid(read_denoised(cfg.run_dir, k, split, cfg.sfbd.chunk)[:n].clamp(-1, 1),
                                              cfg.data.name, "test", n, progress=False)["fid"]
                               for k in range(1, cfg.sfbd.rounds + 1)]
    write_text(cache, json.dumps(out) + "\n")
    return out


def summary(runs: list[dict]) -> dict:
    """Per method and budget: test FID at the validation-selected checkpoint over seeds, and copies."""
    out = {}
    for method in METHODS:
        for limit in ("steps", "equal_evaluations"):
            rows = [r[limit] for r in runs if r["method"] == method and limit in r]
            if rows:
                copies = {k: stats([row["test"][k] for row in rows]) for k in rows[0]["test"] if k.startswith("copy_")}
                out[f"{method}@{limit}"] = {"test_fid": stats([row["test"]["fid"] for row in rows]),
                                            "best_step": [row["best"]["step"] for row in rows],
                                            "val_fid": stats([row["best"]["fid"] for row in rows]), **copies}
    if "clean-only@steps" in out:
        base = out["clean-only@steps"]["test_fid"]["mean"]
        for cell in out.values():
            cell["test_fid_to_clean_only"] = cell["test_fid"]["mean"] / base
    return out


def fmt(s: dict | None, digits: int = 1, pct: bool = False) -> str:
    if s is None:
        return "-"
    f = (lambda v: f"{v:.1%}") if pct else (lambda v: f"{v:.{digits}f}")
    return f(s["mean"]) + (f" ± {f(s['std'])}" if s["std"] is not None else "") + f" ({s['n']})"


def figure(results: dict, path: Path) -> None:
    """Validation FID and near-copies of the clean part against training steps, every run."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    curve = results.get("clean_only_curve", [])
    if curve:
        ax.plot([r["step"] for r in curve], [r["fid"] for r in curve], "--", color="grey", label="clean-only (curve)")
        bx.plot([r["step"] for r in curve], [r["copy_clean"] for r in curve], "--", color="grey")
    seen = set()
    for run in results.get("runs", []):
        rows = run.get("equal_evaluations", run["steps"])["curve"]
        label = run["method"] if run["method"] not in seen else None
        seen.add(run["method"])
        ax.plot([r["step"] for r in rows], [r["fid"] for r in rows], "o-", ms=3, color=colors[run["method"]],
                label=label, alpha=0.8)
    for budget in ("steps", "equal_evaluations"):
        if "budget" in results:
            ax.axvline(results["budget"][budget], color="k", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("training steps")
    ax.set_ylabel("validation FID")
    ax.legend(fontsize=7)
    bx.set_xlabel("training steps")
    bx.set_ylabel("near-copies of the clean part (clean-only)")
    for a in (ax, bx):
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, path)


def samples_figure(args, results: dict, path: Path) -> None:
    """The first seed's test samples of every model at its selected checkpoint, side by side. Each
    grid is kept beside the figure (`<figure>-grids/`: run folders do not travel between checkouts),
    and the figure is redrawn only when every first-seed run's grid is there."""
    kept = path.with_name(path.stem + "-grids")
    runs = [r for r in results.get("runs", []) if r["seed"] == args.first_seed]

    def kept_grid(run: dict) -> Path:
        return kept / f"{run['method']}-s{run['seed']}.png"

    for run in runs:
        stem = Path(run["steps"]["best"]["checkpoint"]).stem
        grid = run_dir(args, run["seed"], run["method"]) / "samples" / f"select-test-{stem}.png"
        if grid.exists():
            kept.mkdir(exist_ok=True)
            shutil.copyfile(grid, kept_grid(run))
    missing = [r["method"] for r in runs if not kept_grid(r).exists()]
    if missing or not runs:
        print(f"{path.name} not redrawn: no test-sample grid of {', '.join(missing) or 'any run'}")
        return
    grids_figure([(f"{r['method']} (step {r['steps']['best']['step']})", kept_grid(r)) for r in runs], path)


def curve_table(results: dict) -> list[str]:
    rows = results.get("clean_only_curve", [])
    if not rows:
        return []
    s = results["settings"]
    return [f"`{command_line()}`: clean-only on the {results['clean_images']} clean images of a "
            f"{s['subset']:,}-image {s['dataset']} subset" + (f" at {s['resolution']}x{s['resolution']} px"
                                                              if "resolution" in s else "")
            + " (the rest: SFBD's noisy part), a "
            f"{s['parameters'] / 1e6:.2f}M-parameter UNet, batch {s['batch']}, lr {s['lr']:g}, fp32, one "
            f"training seed; each checkpoint's EMA weights sample {rows[0]['fid_n']} images (Heun, "
            f"{s['sample_steps']} grid points) scored against {rows[0]['fid_n']} images of the '{s['split']}' split, "
            "and their near-copies of the clean part and of the held-back originals of the noisy part "
            "(nearest-neighbour ratio test):", "",
            "| steps | validation FID | copies of the clean part | copies of the noisy part's originals |",
            "|---:|---:|---:|---:|",
            *(f"| {r['step']} | {r['fid']:.1f} | {r['copy_clean']:.1%} | {r['copy_originals']:.1%} |" for r in rows),
            ""]


def compare_table(results: dict) -> list[str]:
    if "summary" not in results:
        return []
    b, s = results["budget"], results["summary"]
    baselines = any(r["method"] != "sfbd" for r in results["runs"])
    lines = [f"Every model trained for {b['steps']} steps (SFBD: pretraining + rounds) and reported at its best "
             "checkpoint on validation" + (f"; the baselines also at {b['equal_evaluations']} steps, where their "
                                           "training (about 3 network evaluations per image) adds up to SFBD's "
                                           f"{b['backward_evaluations']:,} backward evaluations as well" if baselines
                                           else " (SFBD only in this run)")
             + f". Test FID at N = {results['test_n']} (sample seeds other than validation's); mean ± std (seeds):", "",
             "| method | test FID | best step | copies: clean | originals | denoised | "
             "test FID, equal evaluations |", "|---|---:|---|---:|---:|---:|---:|"]
    for m in METHODS:
        v, w = s.get(f"{m}@steps"), s.get(f"{m}@equal_evaluations")
        if v:
            lines.append(f"| {m} | {fmt(v['test_fid'])} | {', '.join(map(str, v['best_step']))} | "
                         f"{fmt(v['copy_clean'], pct=True)} | {fmt(v['copy_originals'], pct=True)} | "
                         f"{fmt(v.get('copy_denoised'), pct=True)} | {fmt(w['test_fid']) if w else '-'} |")
    lines += paper_table(s)
    if "clean_part_fid" not in results:
        return lines
    lines += ["", f"What the models learn from, scored the same way (test FID, N = {results['test_n']}): the clean "
              f"part itself, repeated to N (a model that copies it perfectly): {results['clean_part_fid']:.1f}; "
              + (f"the held-back originals of the noisy part (the oracle's data): {results['originals_fid']:.1f}; "
                 if "originals_fid" in results else "")
              + ("SFBD's denoised sets of the same images by round (first seed): "
                 + ", ".join(f"{v:.1f}" for v in results["denoised_fid"]) if results.get("denoised_fid") else ""),
              ""]
    return lines


def paper_table(s: dict) -> list[str]:
    """Each method's test FID as a ratio to clean-only's, beside the same ratio in the papers
    (CIFAR-10, 10% clean: the only fraction where both papers give clean-only and the others)."""
    if "clean-only@steps" not in s:
        return []
    paper = PAPER["daras-2024, 10% clean"]
    theirs = {"clean-only": 1.0, "sfbd": PAPER["sfbd"]["10% clean"] / paper["clean-only"],
              "ambient": paper["clean+noisy (ambient)"] / paper["clean-only"],
              "oracle": paper["oracle"] / paper["clean-only"]}
    lines = ["", "Test FID as a ratio to clean-only's (mean over seeds), beside the papers' ratio on CIFAR-10 at 10% "
             "clean (Daras et al. 2024 for clean-only, ambient and all-clean; the SFBD paper for SFBD):", "",
             "| method | here | papers |", "|---|---:|---:|"]
    for m in METHODS:
        v = s.get(f"{m}@steps")
        if v:
            lines.append(f"| {m} | {v['test_fid_to_clean_only']:.2f} | "
                         + (f"{theirs[m]:.2f}" if m in theirs else "-") + " |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/sfbd/mnist-regime.toml")
    p.add_argument("--phase", choices=("curve", "all"), default="all")
    p.add_argument("--fraction", type=float, default=0.04, help="clean fraction")
    p.add_argument("--curve-steps", type=int, default=6000)
    p.add_argument("--every", type=int, default=1000, help="score checkpoints at multiples of this many steps")
    p.add_argument("--test-n", type=int, default=500)
    p.add_argument("--seeds", type=int, default=3, help="training seeds for SFBD and clean-only")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--name", default=None)
    p.add_argument("--tag", default="", help="suffix of SFBD's run folders (for SFBD settings changed with --set)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    torch.set_num_threads(2)
    args.fid = config.load(SFBDJobConfig, args.config, args.overrides).fid
    name = args.name or f"sfbd-regime-{Path(args.config).stem}-c{args.fraction:g}"
    results = {"config": args.config, "fraction": args.fraction, "test_n": args.test_n, "paper": PAPER,
               **earlier_run(args, name)}
    if overrides(args):
        results["overrides"] = overrides(args)

    def save() -> None:
        if results.get("runs"):
            results["summary"] = summary(results["runs"])
        figure(results, HERE / "results" / f"{name}.png")
        samples_figure(args, results, HERE / "results" / f"{name}-samples.png")
        pictures = [f"![validation curves](results/{name}.png)"]
        if "runs" in results:
            pictures.append(f"![test samples at the selected checkpoints](results/{name}-samples.png)")
        text = "\n".join([*curve_table(results), *compare_table(results), *pictures])
        save_results(name, results, text)

    if "clean_only_curve" not in results:
        results.update(curve(args))
        save()
    if args.phase == "all":
        compare(args, results, save)
        save()


def overrides(args) -> list[str]:
    """The settings that change what is measured beyond the config: --set's and --tag."""
    return [*args.overrides, *([f"--tag {args.tag}"] if args.tag else [])]


def earlier_run(args, name: str) -> dict:
    """What an earlier run of this benchmark left in its results file (curve, runs, ceilings), if
    it measured the same thing: same config, clean fraction, test N and curve length."""
    old = earlier(name, {"config": args.config, "fraction": args.fraction, "test_n": args.test_n})
    if old and old.get("overrides", []) != overrides(args):
        raise SystemExit(f"error: results/{name}.json was measured with other --set/--tag: rerun with its settings, "
                         "or with --name")
    if old and old["clean_only_curve"][-1]["step"] != args.curve_steps:
        raise SystemExit(f"error: results/{name}.json holds a {old['clean_only_curve'][-1]['step']}-step curve, not "
                         f"--curve-steps {args.curve_steps}: rerun with its settings, or with --name")
    keep = ("clean_only_curve", "clean_images", "settings", "budget", "runs", "clean_part_fid", "originals_fid",
            "denoised_fid")
    return {"commands": commands(old), **{k: old[k] for k in keep if k in old}}


if __name__ == "__main__":
    main()
