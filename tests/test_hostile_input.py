"""Bad input at the command line: one clear error line, exit status 2, nothing half-written, no data lost."""

import errno
import importlib
import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from attndiff import checkpoint
from attndiff.cli import main

TINY = ["data.name=digits", "unet.channels=8", "unet.channel_mult=[1, 2]", "unet.attn_levels=[1]",
        "train.batch_size=16", "train.precision=fp32", "train.warmup_steps=1", "sample.steps=3", "sample.grid=4",
        "fid.n=0"]


def sets(*overrides):
    return [a for o in overrides for a in ("--set", o)]


def one_error_line(capsys, *expected):
    """The error: one line, the last on stderr (a progress bar cleared with \\r may precede it on that line)."""
    err = capsys.readouterr().err
    assert err.count("attndiff:") == 1 and err.endswith("\n"), err
    line = err.rstrip("\n").split("\n")[-1].split("\r")[-1]
    assert line.startswith("attndiff: error: "), line
    for text in expected:
        assert text in line, line
    return line


def bad_files(tmp_path):
    """Broken datasets of every kind the image loaders accept, by name."""
    np.savez(tmp_path / "ok.npz", images=np.random.default_rng(0).integers(0, 255, (20, 8, 8), np.uint8))
    raw = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(raw[:len(raw) // 2])
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 8, 8), np.uint8))
    np.savez(tmp_path / "emptyfloat.npz", images=np.zeros((0, 8, 8), np.float32))
    np.savez(tmp_path / "nan.npz", images=np.full((4, 8, 8), np.nan, np.float32))
    np.savez(tmp_path / "channels.npz", images=np.zeros((4, 2, 8, 8), np.uint8))
    np.savez(tmp_path / "labels.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.zeros(3))
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(tmp_path / "imgs" / "a.png")
    png = (tmp_path / "imgs" / "a.png").read_bytes()
    (tmp_path / "imgs" / "b.png").write_bytes(png[:len(png) // 3])
    (tmp_path / "nothing").mkdir()


@pytest.mark.parametrize("data,message", [
    ("npz:{}/truncated.npz", "cannot read npz file"),
    ("npz:{}/empty.npz", "empty dataset"),
    ("npz:{}/emptyfloat.npz", "empty dataset"),
    ("npz:{}/nan.npz", "must be finite"),
    ("npz:{}/channels.npz", "1 or 3 channels"),
    ("npz:{}/labels.npz", "3 labels for 4 images"),
    ("npz:{}/missing.npz", "not found"),
    ("folder:{}/imgs", "b.png"),
    ("folder:{}/nothing", "no image files"),
])
def test_broken_datasets(tmp_path, capsys, data, message):
    bad_files(tmp_path)
    out = tmp_path / "run"
    assert main(["train", *sets(*TINY, f'data.name="{data.format(tmp_path)}"', f'out="{out}"')]) == 2
    one_error_line(capsys, message)
    assert not list(out.rglob("*.safetensors")) if out.exists() else True


def test_broken_audio_and_metadata(tmp_path, capsys):
    import soundfile

    tone = np.sin(np.linspace(0, 400, 8000)).astype(np.float32)
    for c in ("a", "b"):
        (tmp_path / "clips" / c).mkdir(parents=True)
        for i in range(3):
            soundfile.write(tmp_path / "clips" / c / f"{i}.wav", tone, 8000)
    raw = (tmp_path / "clips" / "a" / "0.wav").read_bytes()
    (tmp_path / "clips" / "a" / "0.wav").write_bytes(raw[:30])  # cut inside the header
    esc = tmp_path / "esc"
    (esc / "audio").mkdir(parents=True)
    (esc / "meta").mkdir()
    soundfile.write(esc / "audio" / "x.wav", tone, 8000)
    (esc / "meta" / "esc50.csv").write_text("filename,fold,target,category\nx.wav,one,0,dog\n")
    cases = [(f"folder:{tmp_path / 'clips'}", "0.wav"), (f"esc50:{esc}", "bad fold or class id"),
             (f"folder:{tmp_path / 'nowhere'}", "not found")]
    for name, message in cases:
        out = tmp_path / "run"
        assert main(["audio", "run", *sets(f'audio.name="{name}"', "audio.sample_rate=8000", f'out="{out}"')]) == 2
        one_error_line(capsys, message)
        assert not out.exists()


@pytest.mark.parametrize("command,override,message", [
    ("sfbd", "sfbd.clean_fraction=0", "clean_fraction must be in (0, 1]"),
    ("sfbd", "sfbd.clean_fraction=1.5", "clean_fraction must be in (0, 1]"),
    ("sfbd", "sfbd.sigma_zeta=0", "sigma_zeta must be > 0"),
    ("sfbd", "sfbd.sigma_zeta=nan", "must be a finite number"),
    ("train", "train.lr=inf", "must be a finite number"),
    ("sfbd", "sfbd.forward_steps=-3", "forward_steps must be positive"),
    ("sfbd", "sfbd.backward_steps=1", "backward_steps must be >= 2"),
    ("sfbd", "sfbd.stop_metric=\"accuracy\"", "must be one of"),
    ("train", "train.steps=0", "train.steps must be positive"),
    ("train", "train.lr=-1", "lr > 0"),
    ("train", "edm.sigma_min=100", "sigma_min < sigma_max"),
    ("train", "data.limit=-5", "must be >= 0"),
    ("train", "unet.channels=\"many\"", "must be int"),
    ("train", "trian.steps=3", "unknown config key 'trian'"),
    ("sfbd", "sfbd.clean_fraction=1.0", "leaves no noisy images"),
    ("sfbd", "sfbd.backward_scheme=\"euler\"", "must be one of"),
    ("train", "fid.precision=\"fp16\"", "must be one of"),
])
def test_out_of_range_config_values(tmp_path, capsys, command, override, message):
    args = ["sfbd", "run"] if command == "sfbd" else ["train"]
    assert main([*args, *sets(*TINY, f'out="{tmp_path / "run"}"', override)]) == 2
    one_error_line(capsys, message)
    assert not (tmp_path / "run").exists()


def test_a_binary_config_file_is_one_line(tmp_path, capsys):
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00binary")
    assert main(["train", "--config", str(tmp_path / "bin.toml")]) == 2
    one_error_line(capsys, "not UTF-8 text")
    assert main(["train", "--config", str(tmp_path)]) == 2
    one_error_line(capsys, "is a folder")


class Payload:
    """Unpickling this runs a shell command: what a hostile 'checkpoint' would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    (tmp_path / "evil.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    torch.save({"net": Payload(marker)}, tmp_path / "evil.pt")
    for name in ("evil.safetensors", "evil.pt"):
        assert main(["sample", str(tmp_path / name), "--out", str(tmp_path / "s.png")]) == 2
        one_error_line(capsys, name, "not a readable attndiff checkpoint")
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    assert main(["spd", "denoise", str(img), "--model", str(tmp_path / "evil.pt"), "--sigma", "0.5",
                 "--out", str(tmp_path / "den")]) == 2
    one_error_line(capsys, "not a readable attndiff checkpoint")
    assert not marker.exists()
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "den").exists()
    pickle.loads(pickle.dumps(Payload(tmp_path / "live")))  # the payload is live: unpickling runs it
    assert (tmp_path / "live").exists()


def test_a_pickle_planted_as_the_newest_checkpoint_is_skipped_and_the_run_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", *sets(*TINY, f'out="{out}"', "train.steps=4", "train.checkpoint_every=2")]
    assert main(["train", *sets(*TINY, f'out="{out}"', "train.steps=2", "train.checkpoint_every=2")]) == 0
    marker = tmp_path / "payload-ran"
    (out / "checkpoints" / "train-00000003.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.warns(UserWarning, match="skipping damaged checkpoint"):
        assert main(args) == 0
    assert "resuming train from train-00000002" in capsys.readouterr().out
    assert not marker.exists()
    assert checkpoint.load(out / "checkpoints" / "train-00000004.safetensors")[1]["step"] == 4


def test_a_full_disk_keeps_the_previous_checkpoint_and_stops_with_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real = checkpoint.save_file
    calls = []

    def disk_fills_up(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 1:
            return real(tensors, filename, metadata=metadata)
        with open(filename, "wb") as f:  # part of the file, then the disk is full
            f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(checkpoint, "save_file", disk_fills_up)
    args = ["train", *sets(*TINY, f'out="{out}"', "train.steps=6", "train.checkpoint_every=2")]
    assert main(args) == 2
    one_error_line(capsys, "No space left on device", "train-00000004", "train-00000002.safetensors is intact")
    files = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert files == ["train-00000002.json", "train-00000002.safetensors"]  # no partial file, no temp file
    assert checkpoint.load(out / "checkpoints" / "train-00000002.safetensors")[1]["step"] == 2

    monkeypatch.setattr(checkpoint, "save_file", real)  # space freed: the same command continues
    assert main(args) == 0
    assert "resuming train from train-00000002" in capsys.readouterr().out


def test_a_diverging_loss_stops_with_one_line_and_keeps_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", *sets(*TINY, f'out="{out}"', "train.steps=20", "train.checkpoint_every=1", "train.lr=1e30")]
    assert main(args) == 2
    line = one_error_line(capsys, "stopping", "last good checkpoint")
    assert "became inf" in line or "became nan" in line
    tensors = checkpoint.load_latest(out / "checkpoints", "train")[0]
    assert all(torch.isfinite(v).all() for v in tensors.values())


# A vocabulary of command-line pieces: real subcommands, flags, config keys and values, and junk.
WORDS = ["train", "sfbd", "run", "baseline", "spd", "denoise", "attention", "audio", "prepare", "sample", "fid",
         "report", "--config", "--set", "--kind", "--method", "--group", "--head", "--model", "--seeds",
         "--sigma", "--n", "--steps", "--ref", "--out", "--freeze", "oracle", "fa", "C4", "tl", "keys", "0",
         "-1", "1e99", "nan", "inf", "x", "", "/nonexistent", "configs/sfbd/mnist-cpu.toml", "configs/nope.toml",
         "README.md", "Makefile"]
KEYS = ["train.steps", "train.lr", "train.batch_size", "train.grad_accum", "train.precision", "sfbd.clean_fraction",
        "sfbd.sigma_zeta", "sfbd.rounds", "sfbd.stop_metric", "data.name", "data.limit", "unet.channels",
        "unet.channel_mult", "edm.sigma_min", "fid.n", "symmetry.group", "nosuch.key", "train", "out", ""]
VALUES = ["0", "-1", "1.5", "nan", "inf", "-inf", "1e400", "\"x\"", "[1, 2]", "[]", "{}", "true", "\"npz:/no.npz\"",
          "\"folder:/nonexistent\"", "'", "\"", "=", "\"C4\"", "\"cifar10\""]
# The jobs themselves (hours of training) are replaced by a recorder: the fuzz covers everything before them.
JOBS = [("attndiff.jobs.train", "run_train"), ("attndiff.jobs.sfbd", "run_sfbd"),
        ("attndiff.jobs.sfbd_baselines", "run_baseline"), ("attndiff.jobs.spd", "run_spd"),
        ("attndiff.jobs.attention", "run_attention"), ("attndiff.jobs.audio", "run_audio"),
        ("attndiff.data.audio", "prepare")]


COMMANDS = [["train"], ["sfbd", "run"], ["sfbd", "baseline", "--kind", "ambient"], ["spd", "train"],
            ["spd", "denoise", "README.md", "--model", "configs", "--sigma", "0.5"], ["attention", "run"],
            ["audio", "run"], ["audio", "prepare"], ["sample", "/nonexistent"], ["fid", "README.md", "--ref"],
            ["report", "configs"]]


@st.composite
def command_lines(draw):
    junk = st.text(max_size=8).filter(lambda w: not os.path.exists(w))  # no real folders to scan
    start = draw(st.sampled_from([[], *COMMANDS]))
    words = draw(st.just([]) | st.lists(st.sampled_from(WORDS) | junk, max_size=4))
    overrides = draw(st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)), max_size=3))
    return start + words + [a for k, v in overrides for a in ("--set", f"{k}={v}")]


@pytest.fixture
def jobs_recorded(monkeypatch, tmp_path):
    """Jobs replaced by a recorder; the working folder a scratch one that sees the shipped configs."""
    started = []
    for module, name in JOBS:
        monkeypatch.setattr(importlib.import_module(module), name, lambda *a, **k: started.append(a) or Path("."))
    root = Path(__file__).resolve().parent.parent
    for name in ("configs", "README.md", "Makefile"):
        (tmp_path / name).symlink_to(root / name)
    monkeypatch.chdir(tmp_path)
    return started


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=command_lines())
def test_no_command_line_ends_in_a_traceback(argv, jobs_recorded, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage errors (2) and --help (0)
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), (argv, code, err)
    if code == 2 and err.strip() and not err.startswith("usage:"):
        assert err.strip().splitlines()[-1].startswith("attndiff: "), err
