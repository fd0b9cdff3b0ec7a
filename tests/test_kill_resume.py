"""SIGKILL a real `attndiff` process at several points, rerun the same command, and get bit for bit
the weights of a run that was never interrupted (seeded, CPU, fp32, one thread)."""

import functools
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from attndiff import checkpoint
from attndiff.run import Run

TINY = ["data.name=digits", "data.limit=240", "unet.channels=8", "unet.channel_mult=[1, 2]",
        "unet.attn_levels=[1]", "train.batch_size=16", "train.precision=fp32", "train.warmup_steps=2",
        "train.log_every=1", "sample.steps=3", "sample.grid=4", "fid.n=0"]
TRAIN = ["train", "--config", "configs/train/mnist-cpu.toml"]
SFBD = ["sfbd", "run", "--config", "configs/sfbd/mnist-cpu.toml"]
SFBD_SETS = ["train.steps=16", "train.checkpoint_every=2", "sfbd.clean_fraction=0.25", "sfbd.rounds=1",
             "sfbd.forward_steps=16", "sfbd.forward_warmup_steps=1", "sfbd.backward_steps=8", "sfbd.chunk=20",
             "sfbd.backward_batch=20", "sfbd.denoised_fid_n=0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def command(base, run_dir, sets):
    overrides = [a for o in [*TINY, *sets, f'out="{run_dir}"'] for a in ("--set", o)]
    return [sys.executable, "-m", "attndiff", *base, *overrides]


def kill_when(cmd, ready, what):
    """Start cmd and SIGKILL it as soon as ready() is true; fail if it finishes first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            pytest.fail(f"the run finished (exit {proc.returncode}) before the kill point: {what}")
        time.sleep(0.002)
    proc.kill()
    pytest.fail(f"kill point never reached: {what}")


def final(run_dir, tag):
    return checkpoint.load_latest(run_dir / "checkpoints", tag)[0]


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def checkpoints(run_dir, tag):
    return lambda: len(checkpoint.list_checkpoints(run_dir / "checkpoints", tag))


def metrics_lines(run_dir):
    path = run_dir / "metrics.jsonl"
    return lambda: path.read_text().count("\n") if path.exists() else 0


def run_to_end(cmd) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout + r.stderr


def logged_steps(run_dir, tag):
    return [r["step"] for r in Run(run_dir).metrics() if r.get("tag") == tag]


def test_killed_training_resumes_to_the_uninterrupted_weights(tmp_path):
    sets = ["train.steps=24", "train.checkpoint_every=4", "train.keep_checkpoints=3"]
    run_to_end(command(TRAIN, tmp_path / "reference", sets))
    reference = final(tmp_path / "reference", "train")
    points = {"after 3 logged steps, before any checkpoint": lambda d: metrics_lines(d)() >= 3,
              "after the first checkpoint": lambda d: checkpoints(d, "train")() >= 1,
              "after the third checkpoint": lambda d: checkpoints(d, "train")() >= 3}
    for i, (what, ready) in enumerate(points.items()):
        run_dir = tmp_path / f"killed{i}"
        cmd = command(TRAIN, run_dir, sets)
        kill_when(cmd, functools.partial(ready, run_dir), what)
        saved = checkpoints(run_dir, "train")()
        output = run_to_end(cmd)
        assert ("resuming train" in output) == (saved > 0), what  # it continued, it did not start over
        assert_identical(final(run_dir, "train"), reference)
        assert logged_steps(run_dir, "train") == list(range(1, 25))  # nothing logged twice or lost


def test_sfbd_killed_in_every_phase_resumes_to_the_uninterrupted_weights(tmp_path):
    run_to_end(command(SFBD, tmp_path / "reference", SFBD_SETS))
    reference = final(tmp_path / "reference", "round1")
    points = {
        "during pretraining": lambda d: checkpoints(d, "pretrain")() >= 2,
        "mid-way through the backward step": lambda d: len(list((d / "denoised" / "round1").glob("*.npz"))) >= 3,
        "during the forward step": lambda d: checkpoints(d, "round1")() >= 1,
    }
    for i, (what, ready) in enumerate(points.items()):
        run_dir = tmp_path / f"killed{i}"
        cmd = command(SFBD, run_dir, SFBD_SETS)
        kill_when(cmd, functools.partial(ready, run_dir), what)
        output = run_to_end(cmd)
        assert "resuming pretrain" in output, what
        assert_identical(final(run_dir, "round1"), reference)
        assert logged_steps(run_dir, "round1") == list(range(1, 17))
        assert [r["round"] for r in Run(run_dir).metrics() if r.get("tag") == "sfbd-eval"] == [0, 1]
