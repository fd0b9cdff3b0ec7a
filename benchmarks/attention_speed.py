"""The synthetic attention analysis, end to end: attndiff against the authors' script, side by side.

Times the whole `attndiff attention run --config configs/attention/synthetic.toml` (three heads,
5,000 epochs each, snapshots, report and figures) in a fresh run folder, and, with --authors,
the authors' `perform_synthetic_analysis.py` (the same three heads and epochs, with its figures)
in a temporary copy of their repository, alternating for --rounds rounds on the same machine.
Their code is only run, never imported into attndiff; it needs scikit-learn, which the project
does not install: put it on --authors-pythonpath (e.g. `pip install --target /tmp/authors-site
scikit-learn`). Also times each head's full-batch epochs on the real-text config.

    python benchmarks/attention_speed.py --authors /path/to/On_the_Dynamics_of_Training_Attention_Models \
        --authors-pythonpath /tmp/authors-site
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import save_results  # noqa: E402

from attndiff import config  # noqa: E402
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/attention/synthetic.toml")
    p.add_argument("--authors", type=Path, help="a checkout of the authors' repository (run, never imported)")
    p.add_argument("--authors-pythonpath", default="", help="where scikit-learn for their script is installed")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--text-config", default="configs/attention/rt-polarity.toml")
    p.add_argument("--name", default="attention-speed")
    args = p.parse_args()
    times = {"attndiff": [], "authors": []}
    for _ in range(args.rounds):
        times["attndiff"].append(ours(args.config, args.threads))
        if args.authors:
            times["authors"].append(theirs(args.authors, args.authors_pythonpath, args.threads))
    medians = {k: statistics.median(v) for k, v in times.items() if v}
    results = {"config": args.config, "threads": args.threads, "rounds": args.rounds, "seconds": times,
               "median_s": medians, "speedup": medians["authors"] / medians["attndiff"] if args.authors else None,
               "text": text_speed(args.text_config)}
    save_results(args.name, results, table(results))


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
