"""The small commands: `attndiff sample` (images from any trained model) and `attndiff data`
(which datasets load here)."""

from __future__ import annotations

from pathlib import Path

from attndiff import UserError, progress
from attndiff.data import images
from attndiff.fsutil import write_npz
from attndiff.jobs.train import load_model
from attndiff.report.figures import save_grid


def sample_model(run: str, out: str, *, n: int = 64, steps: int = 18, stochastic: bool = False, churn: float = 0.0,
                 seed: int = 0, device: str = "cpu") -> Path:
    """n samples (per-sample seeds seed, seed + 1, ...) as a .png grid or a uint8 .npz."""
    if n < 1 or steps < 1 or seed < 0:
        raise UserError("--n and --steps must be >= 1 and --seed >= 0")
    if stochastic and churn:
        raise UserError("--churn applies to the deterministic solver, not with --stochastic")
    x = load_model(run, device=device).sample(range(seed, seed + n), steps=steps, stochastic=stochastic, churn=churn)
    path = Path(out)
    if path.suffix == ".png":
        save_grid(x, path)
    else:
        path = write_npz(path.with_suffix(".npz"), images=images.to_uint8(x))
    progress.say(f"wrote {n} samples to {path}")
    return path


def rebuild_report(run_dir: str) -> Path:
    from attndiff.report.html import write_report

    run = Path(run_dir)
    if not (run / "metrics.jsonl").exists() and not (run / "config.toml").exists():
        raise UserError(f"{run} is not a run folder (no metrics.jsonl or config.toml)")
    return write_report(run)


def list_datasets(names: list[str]) -> None:
    """Load each dataset's train and test split and print its size, shape and range (all built-in ones
    by default, where an unavailable one is reported instead of failing)."""
    for name in names or list(images.DATASETS):
        try:
            for split in ("train", "test"):
                d = images.load(name, split)
                lo, hi = d.images.min().item(), d.images.max().item()
                print(f"{name:14s} {split:5s} {len(d):6d} images {tuple(d.shape)}  range [{lo:.2f}, {hi:.2f}]"
                      f"  {len(d.classes)} classes")
                if ":" in name:
                    break
        except UserError as e:
            if names:
                raise
            print(f"{name:14s} unavailable: {e}")
