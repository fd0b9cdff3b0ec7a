import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attndiff.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _run(*args):
    return subprocess.run([sys.executable, "-m", "attndiff", *args], capture_output=True, text=True, timeout=120)


def test_every_subcommand_has_help():
    for cmd in ("train", "sample", "fid", "report", "data", "spd"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0


def test_unknown_config_key_is_one_line_and_exit_2():
    r = _run("train", "--set", "train.stepz=3")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["attndiff: error: unknown config key 'train.stepz' "
                                             "(known here: batch_size, checkpoint_every, ema_halflife_images, "
                                             "ema_rampup, grad_accum, grad_clip, keep_checkpoints, log_every, lr, "
                                             "precision, seed, steps, warmup_steps)"]


@pytest.mark.parametrize("args,message", [
    (["train", "--set", "data.name=npz:/nonexistent.npz"], "npz file not found"),
    (["train", "--config", "/nonexistent.toml"], "config file not found"),
    (["report", "/nonexistent"], "not a run folder"),
])
def test_bad_input_exits_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_fid_rejects_corrupt_and_wrongly_shaped_samples(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "0.png").write_bytes(b"garbage")
    assert main(["fid", str(tmp_path / "imgs"), "--ref", "digits"]) == 2
    assert "0.png" in capsys.readouterr().err
    np.savez(tmp_path / "s.npz", images=np.zeros((4, 2, 8, 8), np.uint8))
    assert main(["fid", str(tmp_path / "s.npz"), "--ref", "digits"]) == 2
    assert "channels" in capsys.readouterr().err


def test_train_sample_fid_report_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--config", str(ROOT / "configs/train/mnist-cpu.toml"), "--set", f'out="{run}"',
            "--set", "data.name=digits", "--set", "unet.channels=8", "--set", "unet.channel_mult=[1, 2]",
            "--set", "unet.attn_levels=[1]", "--set", "train.steps=3", "--set", "sample.steps=3",
            "--set", "sample.grid=4", "--set", "fid.n=8"]
    assert main(args) == 0
    assert (run / "report.html").stat().st_size > 1000 and (run / "config.toml").exists()
    assert list((run / "checkpoints").glob("train-00000003.safetensors"))
    assert list((run / "samples").glob("train-*.png"))
    assert main(["sample", str(run), "--n", "4", "--steps", "3", "--out", str(tmp_path / "s.npz")]) == 0
    assert np.load(tmp_path / "s.npz")["images"].shape == (4, 1, 8, 8)
    assert main(["fid", str(tmp_path / "s.npz"), "--ref", "digits", "--n", "8"]) == 0
    assert "FID" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["sample", "runs/x", "--solver", "sde"], "--solver was renamed: use --stochastic"),
    (["spd", "denoise", "a.png", "--model", "m", "--sigma", "0.5", "--ode"], "--ode was renamed: use --no-stochastic"),
])
def test_renamed_flags_are_one_line_naming_the_new_one(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
