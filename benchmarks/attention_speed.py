"""The synthetic attention analysis, end to end: attndiff against the authors' script, side by side.

Times the whole `attndiff attention run --config configs/attention/synthetic.toml` (three heads,
5,000 epochs each, snapshots, report and figures) in a fresh run folder, and, with --authors,
the authors' `perform_synthetic_analysis.py` (the same three heads and epochs, with its figures)
in a temporary copy of their repository, alternating for --rounds rounds on the same machine.
Their code is only run, never imported into attndiff; it needs scikit-learn, which the project
does not install: put it on --authors-pythonpath (e.g. `pip install --target /tmp/authors-site
scikit-learn`). Also times each head's full-batch epochs on the real-text config.

With --part text, the real-text epochs side by side instead: each head trained alone for
--epochs on --text-config, by this checkout and by the code at --before (a git revision, put in a
temporary worktree and run on PYTHONPATH), alternating for --rounds rounds, at each of --thread-counts.

    python benchmarks/attention_speed.py --authors /path/to/On_the_Dynamics_of_Training_Attention_Models \
        --authors-pythonpath /tmp/authors-site
    python benchmarks/attention_speed.py --part text --before 1bf8827 --rounds 3
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

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import save_results, worktree  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.attention.dynamics import AttnTrainConfig, train_attention  # noqa: E402
from attndiff.attention.model import AttentionClassifier, variant_model  # noqa: E402
from attndiff.attention.task import load as load_corpus  # noqa: E402
from attndiff.jobs.attention import AttentionJobConfig  # noqa: E402
from attndiff.run import Run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def time_command(command: list[str], cwd: Path, env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def ours(config_path: str, threads: int) -> float:
    """Wall seconds of the whole job in a fresh run folder (nothing reused)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "attndiff", "attention", "run", "--config", str(ROOT / config_path),
                   "--set", f'out="{tmp}/run"']
        return time_command(command, ROOT, {**os.environ, "OMP_NUM_THREADS": str(threads)})


def theirs(repo: Path, pythonpath: str, threads: int) -> float:
    """Wall seconds of perform_synthetic_analysis.py in a fresh copy of their repository."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git", "results"))
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MPLBACKEND": "Agg",
               "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, os.environ.get("PYTHONPATH", "")) if p)}
        return time_command([sys.executable, "perform_synthetic_analysis.py"], copy, env)


def text_speed(config_path: str) -> dict:
    """Epochs per second of each head on real text, from a fresh `attention run`."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "attndiff", "attention", "run", "--config", config_path, "--set",
                        f'out="{tmp}/run"', "--set", "baseline=false"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finals = [r for r in Run(Path(tmp) / "run").metrics() if r.get("tag", "").endswith("-final")]
    epochs = config.load(AttentionJobConfig, ROOT / config_path).train.epochs
    return {"config": config_path, "epochs": epochs, "epochs_per_s": {r["variant"]: r["epochs_per_s"] for r in finals}}


HEADS = ("fc", "tc", "tl")


def heads_epochs_per_s(config_path: str, epochs: int) -> dict[str, float]:
    """Epochs per second of each head trained alone in this process, by whichever attndiff is on
    the path (the API used here is the same at the revisions compared)."""
    cfg = config.load(AttentionJobConfig, ROOT / config_path)
    corpus = load_corpus(cfg.task)
    train = AttnTrainConfig(epochs=epochs, lr=cfg.train.lr, head_lr=cfg.train.head_lr,
                            snapshot_every=cfg.train.snapshot_every)
    warm = AttentionClassifier(variant_model(cfg.model, "tc"), len(corpus.words), len(corpus.classes))
    train_attention(warm, corpus, AttnTrainConfig(epochs=2, lr=1.0, snapshot_every=1), progress=False)  # imports
    rates = {}
    for head in HEADS:
        model = AttentionClassifier(variant_model(cfg.model, head), len(corpus.words), len(corpus.classes))
        t = time.perf_counter()
        train_attention(model, corpus, train, padding=cfg.task.padding, progress=False)
        rates[head] = epochs / (time.perf_counter() - t)
    return rates


def heads_in_child(src: Path | None, config_path: str, epochs: int, threads: int) -> dict[str, float]:
    """heads_epochs_per_s in a fresh process at `threads` threads, with `src` first on the path."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, __file__, "--child-heads", config_path, "--epochs", str(epochs),
                          "--threads", str(threads)], env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def text_before_after(args) -> dict:
    """Each head's epochs/s on real text, this checkout against --before, alternating rounds."""
    with worktree(args.before) as (tree, revision):
        rates = {t: {"before": [], "now": []} for t in args.thread_counts}
        for _ in range(args.rounds):
            for threads in args.thread_counts:
                rates[threads]["before"].append(heads_in_child(tree / "src", args.text_config, args.epochs, threads))
                rates[threads]["now"].append(heads_in_child(None, args.text_config, args.epochs, threads))
    medians = {t: {side: {h: statistics.median(r[h] for r in runs) for h in HEADS} for side, runs in per.items()}
               for t, per in rates.items()}
    return {"config": args.text_config, "epochs": args.epochs, "rounds": args.rounds, "before": args.before,
            "before_revision": revision, "epochs_per_s": {str(t): v for t, v in rates.items()},
            "median_epochs_per_s": {str(t): v for t, v in medians.items()},
            "speedup": {str(t): {h: m["now"][h] / m["before"][h] for h in HEADS} for t, m in medians.items()}}


def text_table(results: dict) -> str:
    lines = [f"Real text side by side ({results['config']}, each head trained alone for {results['epochs']} "
             f"full-batch epochs with its snapshots; median of {results['rounds']} alternating rounds): epochs "
             f"per second at revision {results['before_revision'][:7]} (before the speed work) and now.", "",
             "| threads | head | before | now | speed-up |", "|---:|---|---:|---:|---:|"]
    for t, m in results["median_epochs_per_s"].items():
        for h in HEADS:
            lines.append(f"| {t} | {h.upper()} | {m['before'][h]:.1f} | {m['now'][h]:.0f} | "
                         f"{results['speedup'][t][h]:.1f}x |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/attention/synthetic.toml")
    p.add_argument("--authors", type=Path, help="a checkout of the authors' repository (run, never imported)")
    p.add_argument("--authors-pythonpath", default="", help="where scikit-learn for their script is installed")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--text-config", default="configs/attention/rt-polarity.toml")
    p.add_argument("--name", default=None, help="default attention-speed, or attention-text-speed with --part text")
    p.add_argument("--part", choices=("synthetic", "text"), default="synthetic")
    p.add_argument("--before", default="1bf8827", help="--part text: the revision to compare with")
    p.add_argument("--epochs", type=int, default=150, help="--part text: epochs per head")
    p.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2])
    p.add_argument("--child-heads", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_heads:  # one side of --part text, in its own process
        torch.set_num_threads(args.threads)
        print(json.dumps(heads_epochs_per_s(args.child_heads, args.epochs)))
        return
    if args.part == "text":
        results = text_before_after(args)
        save_results(args.name or "attention-text-speed", results, text_table(results))
        return
    times = {"attndiff": [], "authors": []}
    for _ in range(args.rounds):
        times["attndiff"].append(ours(args.config, args.threads))
        if args.authors:
            times["authors"].append(theirs(args.authors, args.authors_pythonpath, args.threads))
    medians = {k: statistics.median(v) for k, v in times.items() if v}
    results = {"config": args.config, "threads": args.threads, "rounds": args.rounds, "seconds": times,
               "median_s": medians, "speedup": medians["authors"] / medians["attndiff"] if args.authors else None,
               "text": text_speed(args.text_config)}
    save_results(args.name or "attention-speed", results, table(results))


def table(results: dict) -> str:
    m = results["median_s"]
    lines = [f"The synthetic analysis end to end ({results['config']}: FC, TC and TL, 5,000 epochs each, with "
             f"figures), {results['threads']} threads, median of {results['rounds']} alternating round(s):", "",
             "| | wall time |", "|---|---:|", f"| attndiff attention run | {m['attndiff']:.0f} s |"]
    if "authors" in m:
        lines += [f"| the authors' perform_synthetic_analysis.py | {m['authors']:.0f} s |", "",
                  f"attndiff is {results['speedup']:.1f}x faster."]
    text = results["text"]
    speed = ", ".join(f"{k} {v:.0f}" for k, v in text["epochs_per_s"].items())
    lines += ["", f"Real text ({text['config']}, {text['epochs']:,} full-batch epochs per head): epochs per second "
              f"{speed}, each head's own rate while the heads train at once in worker processes sharing the cores."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
