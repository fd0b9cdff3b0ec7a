"""The main job (`make run`: `attndiff sfbd run` on configs/sfbd/mnist-cpu.toml) before and after, side by side.

Runs the job as it was at --before and as it is at --now (default HEAD): each side's code and its
own config, in a temporary git worktree on PYTHONPATH, alternating for --rounds rounds on the same
machine, each in a fresh run folder. Records each run's wall time (the whole command, start-up
included), the FID of every evaluation it logged (the last one is the final model's), where its
time went and its final sample grid (each side's first seed side by side: results/<name>-samples.png).
Training seeds: --seeds for both sides, or fewer for the before side with --before-seeds (the FID
spread between seeds is what a difference is compared with).
Resumable: each finished run is kept in --work (one JSON per side, seed and round) and not run again.

    python benchmarks/main_job.py --before b7713ff
    python benchmarks/main_job.py --before b7713ff --seeds 0 1 --before-seeds 0   # the spread of now's FID
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import HERE, grids_figure, save_results, stats, worktree  # noqa: E402

from attndiff.fsutil import write_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_job(tree: Path, config: str, seed: int, threads: int, overrides: list[str], keep: Path, grid: Path) -> dict:
    """One `attndiff sfbd run` of the code in `tree` on its own copy of `config`: wall seconds and
    FIDs; the run's metrics.jsonl is kept at `keep` (where the time went: `phases`) and its final
    sample grid at `grid`."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(p for p in (str(tree / "src"), os.environ.get("PYTHONPATH", "")) if p)}
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "attndiff", "sfbd", "run", "--config", config, "--set",
                   f'out="{tmp}/run"', "--set", f"train.seed={seed}", *(a for o in overrides for a in ("--set", o))]
        t = time.perf_counter()
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if done.returncode:
            raise SystemExit(f"{' '.join(command)} failed in {tree}:\n{done.stderr[-2000:]}")
        write_text(keep, (Path(tmp) / "run" / "metrics.jsonl").read_text())
        grids = sorted((Path(tmp) / "run" / "samples").glob("sfbd-*.png"))
        if grids:
            shutil.copyfile(grids[-1], grid)
    records = read_records(keep)
    evals = [r for r in records if str(r.get("tag", "")).endswith("-eval") and "fid" in r]
    if not evals:
        raise SystemExit(f"{' '.join(command)} logged no FID (fid.n = 0?): nothing to compare")
    return {"seed": seed, "seconds": seconds, "fids": [{"tag": r["tag"], "step": r.get("step"), "fid": r["fid"],
                                                        "fid_n": r.get("fid_n")} for r in evals],
            "final_fid": evals[-1]["fid"]}


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


PHASES = {"backward": "backward step", "sfbd-eval": "evaluation"}  # every other record: training steps


def phases(records: list[dict], seconds: float) -> dict:
    """Seconds per phase of one run, from its records' timestamps: the time between two records
    belongs to the later one's phase (training steps are logged every few steps, a backward step
    and an evaluation when they end); `other` is the rest of the wall time (start-up, the steps
    before the first record, the report)."""
    out = dict.fromkeys(("training", *PHASES.values()), 0.0)
    for before, after in zip(records, records[1:]):
        out[PHASES.get(after["tag"], "training")] += after["time"] - before["time"]
    return {**out, "other": seconds - sum(out.values())}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="b7713ff", help="the revision to compare with (the speed issue's 'today')")
    p.add_argument("--now", default="HEAD", help="the revision measured as now (committed code, so that editing "
                   "the checkout while the benchmark runs changes nothing)")
    p.add_argument("--config", default="configs/sfbd/mnist-cpu.toml", help="taken from each side's own tree")
    p.add_argument("--sides", nargs="+", choices=("before", "now"), default=["before", "now"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--before-seeds", type=int, nargs="+", default=None,
                   help="run the before side for these seeds only (default: --seeds)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for both sides")
    p.add_argument("--name", default="main-job")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench" / "main-job",
                   help="finished runs are kept here and not run again")
    args = p.parse_args()
    seeds = {"before": args.seeds if args.before_seeds is None else args.before_seeds, "now": args.seeds}
    runs = {side: [] for side in args.sides}
    grids = {}  # each side's final samples, first seed
    with worktree(args.before) as (tree, revision), worktree(args.now) as (now_tree, now_revision):
        trees = {"before": tree, "now": now_tree}
        revisions = {"before": revision, "now": now_revision}
        for r in range(args.rounds):
            for seed in args.seeds:
                for side in (side for side in args.sides if seed in seeds[side]):
                    done = args.work / f"{side}-s{seed}-r{r}.json"
                    kept = json.loads(done.read_text()) if done.exists() else None
                    key = json.dumps([args.config, revisions[side], args.threads, args.overrides])
                    metrics, grid = done.with_suffix(".metrics.jsonl"), done.with_suffix(".png")
                    if kept is None or kept["key"] != key:
                        kept = {"key": key, "run": run_job(trees[side], args.config, seed, args.threads,
                                                           args.overrides, metrics, grid)}
                        write_text(done, json.dumps(kept) + "\n")
                    if metrics.exists():
                        records = read_records(metrics)
                        kept["run"]["phases"] = phases(records, kept["run"]["seconds"])
                        kept["run"]["denoised_fids"] = [r["denoised_fid"] for r in records
                                                        if r.get("tag") == "sfbd-eval" and r.get("round")]
                    runs[side].append(kept["run"])
                    print(side, json.dumps(runs[side][-1]), flush=True)
                    if r == 0 and seed == seeds[side][0] and grid.exists():
                        grids[side] = (f"{side} ({revisions[side][:7]}), seed {seed}: "
                                       f"FID {kept['run']['final_fid']:.1f}", grid)
    summary = {side: {"seconds": stats([r["seconds"] for r in rs]),
                      "final_fid": stats([r["final_fid"] for r in rs])} for side, rs in runs.items()}
    median = {side: statistics.median(r["seconds"] for r in rs) for side, rs in runs.items()}
    ratio = median["now"] / median["before"] if len(median) == 2 else None
    results = {"config": args.config, "before": args.before, "before_revision": revision,
               "now_revision": now_revision, "seeds": {side: seeds[side] for side in args.sides},
               "rounds": args.rounds, "threads": args.threads, "overrides": args.overrides, "runs": runs,
               "summary": summary, "time_ratio_now_over_before": ratio}
    figure = HERE / "results" / f"{args.name}-samples.png"
    if grids:
        grids_figure(list(grids.values()), figure)
    save_results(args.name, results, table(results) + (f"\n\n![final samples](results/{figure.name})" if grids else ""))


def mean_std(s: dict, digits: int) -> str:
    return f"{s['mean']:.{digits}f}" + (f" ± {s['std']:.{digits}f}" if s["std"] is not None else "")


def table(results: dict) -> str:
    n = {r["fids"][-1]["fid_n"] for rs in results["runs"].values() for r in rs}

    def label(side: str) -> str:
        return f"{side} ({results[f'{side}_revision'][:7]})"

    lines = [f"The main job ({results['config']}, each side's own code and config; {results['threads']} threads, "
             f"{results['rounds']} round(s)): wall time of the whole command and the final model's FID (N = "
             f"{', '.join(map(str, sorted(n, key=str)))}), mean ± std over training seeds.", "",
             "| code | seeds | wall time (s) | final FID |", "|---|---|---:|---:|"]
    for side, s in results["summary"].items():
        seeds = ", ".join(map(str, results["seeds"][side]))
        lines.append(f"| {label(side)} | {seeds} | {mean_std(s['seconds'], 0)} | {mean_std(s['final_fid'], 1)} |")
    if results["time_ratio_now_over_before"] is not None:
        lines += ["", f"Now takes {results['time_ratio_now_over_before']:.2f}x the time of before (medians)."]
    timed = {side: [r["phases"] for r in rs if "phases" in r] for side, rs in results["runs"].items()}
    names = next((list(ps[0]) for ps in timed.values() if ps), [])
    if names:
        lines += ["", "Where the time went: seconds from each run's own log (mean over the runs whose log was kept) "
                  "and their share of the wall time; `other` is start-up, the steps before the first record and "
                  "the report.", "", "| code | runs | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
        for side, ps in timed.items():
            if ps:
                mean = {k: statistics.fmean(p[k] for p in ps) for k in names}
                total = sum(mean.values())
                lines.append(f"| {label(side)} | {len(ps)} | "
                             + " | ".join(f"{mean[k]:.0f} ({mean[k] / total:.0%})" for k in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
