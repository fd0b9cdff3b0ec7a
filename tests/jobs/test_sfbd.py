"""The SFBD pipeline end to end on a tiny setting: artifacts, data hygiene, kill-and-resume."""

import dataclasses
from pathlib import Path

import pytest
import torch

from attndiff import checkpoint, config
from attndiff.jobs import sfbd as loop
from attndiff.jobs import sfbd_baselines as baselines
from attndiff.jobs.sfbd import SFBDJobConfig, run_sfbd
from attndiff.run import Run

TINY = [
    "data.name=digits", "data.limit=200",
    "unet.channels=8", "unet.channel_mult=[1, 2]", "unet.attn_levels=[1]",
    "train.steps=6", "train.batch_size=16", "train.precision=fp32", "train.checkpoint_every=2",
    "train.warmup_steps=2", "train.log_every=2",
    "sfbd.clean_fraction=0.2", "sfbd.rounds=2", "sfbd.forward_steps=4", "sfbd.forward_warmup_steps=1",
    "sfbd.backward_steps=10", "sfbd.chunk=50", "sfbd.backward_batch=40", "sfbd.denoised_fid_n=0",
    "sample.steps=3", "sample.grid=4", "fid.n=0",
]


def tiny(tmp_path, *extra) -> SFBDJobConfig:
    return config.load(SFBDJobConfig, None, TINY + [f'out="{tmp_path}"', *extra])


def final_weights(run_dir, tag="round2"):
    tensors, meta, _ = checkpoint.load_latest(run_dir / "checkpoints", tag)
    return {k: v for k, v in tensors.items() if k.startswith(("net.", "ema."))}


def test_tiny_run_writes_every_artifact(tmp_path):
    # backend onnx: the sampling network in ONNX Runtime end to end ("auto" keeps a net this small in torch)
    cfg = tiny(tmp_path / "run", "fid.n=8", "sfbd.denoised_fid_n=8", "sample.backend=onnx")
    run_dir = run_sfbd(cfg)
    assert (run_dir / "report.html").exists() and (run_dir / "config.toml").exists()
    for k in range(3):
        assert (run_dir / "samples" / f"triplets-round{k}.png").exists()
        assert (run_dir / "samples" / f"sfbd-{k:08d}.png").exists()
    rounds = [r for r in Run(run_dir).metrics() if r.get("tag") == "sfbd-eval"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for r in rounds:
        assert r["fid_n"] == 8 and r["denoised_fid_n"] == 8 and r["fid"] > 0 and r["denoised_psnr"] > 0
    assert len(list((run_dir / "denoised" / "round2").glob("*.npz"))) == 4  # 160 noisy images in chunks of 50
    assert not (run_dir / "denoised" / "round1").exists()
    assert [r["round"] for r in Run(run_dir).metrics() if r.get("tag") == "backward"] == [1, 2]
    assert "SFBD rounds" in (run_dir / "report.html").read_text()


def nan_originals(monkeypatch):
    """Replace the held-back originals by NaN: any use of them in training would make the loss NaN (an error)."""
    real = loop.make_noisy_split

    def patched(*args, **kwargs):
        split = real(*args, **kwargs)
        poisoned = dataclasses.replace(split.originals, images=torch.full_like(split.originals.images, float("nan")))
        return dataclasses.replace(split, originals=poisoned)

    monkeypatch.setattr(loop, "make_noisy_split", patched)


def test_held_back_originals_never_reach_training(tmp_path, monkeypatch):
    nan_originals(monkeypatch)
    run_dir = run_sfbd(tiny(tmp_path / "sfbd"))
    for v in final_weights(run_dir).values():
        assert torch.isfinite(v).all()
    for kind in ("clean-only", "noisy-only", "ambient"):
        out = baselines.run_baseline(tiny(tmp_path / "b"), kind)
        assert all(torch.isfinite(v).all() for v in final_weights(out, kind).values())


class SimulatedKill(Exception):
    pass


def kill_at(monkeypatch, n):
    """Raise at the n-th write of a checkpoint or a denoised chunk, as if the process died there."""
    calls = {"n": 0}

    def wrap(fn):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise SimulatedKill(f"killed at write {n}")
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(checkpoint, "save", wrap(checkpoint.save))
    monkeypatch.setattr(loop, "write_npz", wrap(loop.write_npz))


# writes: 3 pretrain saves, 4 round-1 chunks, 2 round-1 saves, 4 round-2 chunks, 2 round-2 saves
@pytest.mark.parametrize("kill", [2, 5, 8, 11, 15])
def test_killed_run_resumes_to_exactly_the_uninterrupted_result(tmp_path, monkeypatch, kill):
    reference = final_weights(run_sfbd(tiny(tmp_path / "a")))
    with monkeypatch.context() as m:
        kill_at(m, kill)
        with pytest.raises(SimulatedKill):
            run_sfbd(tiny(tmp_path / "b"))
    resumed_dir = run_sfbd(tiny(tmp_path / "b"))
    resumed = final_weights(resumed_dir)
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
    records = Run(resumed_dir).metrics()
    pretrain_steps = [r["step"] for r in records if r.get("tag") == "pretrain"]
    assert pretrain_steps == sorted(set(pretrain_steps))  # no phase logged twice
    assert [r["round"] for r in records if r.get("tag") == "sfbd-eval"] == [0, 1, 2]


def test_every_sfbd_config_parses_and_builds():
    from attndiff.data.mixtures import MIXTURES, mixture
    from attndiff.jobs.train import model_spec

    for path in sorted((Path(__file__).resolve().parents[2] / "configs" / "sfbd").glob("*.toml")):
        cfg = config.load(SFBDJobConfig, path)
        if cfg.data.name in MIXTURES:
            shape = (mixture(cfg.data.name).dim, 1, 1)
        else:
            channels = 1 if cfg.data.name in ("mnist", "fashion-mnist") else 3
            resolution = cfg.data.resolution or {"mnist": 28, "fashion-mnist": 28}.get(cfg.data.name, 0) \
                or (64 if "celeba" in cfg.name else 32)
            shape = (channels, resolution, resolution)
        net = model_spec(cfg, shape).new_net()
        assert net(torch.zeros(2, *shape), torch.zeros(2)).shape == (2, *shape), path


@pytest.mark.parametrize("method", ["wt", "fa"])
def test_sfbd_with_an_equivariant_model_keeps_it_equivariant(tmp_path, method):
    """[symmetry] in an SFBD config: every phase trains, denoises and samples with the equivariant model."""
    from attndiff.jobs.train import load_model
    from attndiff.symmetry import groups
    from attndiff.symmetry.metrics import equivariance_error

    cfg = tiny(tmp_path / method, "data.name=c4-mnist", "data.limit=100", "symmetry.group=C4",
               f"symmetry.method={method}")
    run_dir = run_sfbd(cfg)
    model = load_model(run_dir, precision="fp32")  # the newest checkpoint: round 2's fine-tuned model
    assert model.meta["tag"] == "round2"
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert equivariance_error(model.denoiser, x, groups.get("C4")) < 1e-5
    baseline = baselines.run_baseline(cfg, "clean-only")
    assert equivariance_error(load_model(baseline, precision="fp32").denoiser, x, groups.get("C4")) < 1e-5


def test_ambient_baseline_refuses_symmetry_methods_with_their_own_loss(tmp_path):
    from attndiff import UserError

    cfg = tiny(tmp_path, "symmetry.group=C4", "symmetry.method=reg")
    with pytest.raises(UserError, match="ambient baseline supports symmetry.method none, wt"):
        baselines.run_baseline(cfg, "ambient")


@pytest.mark.parametrize("name, dim", [("gmm-2d", 2), ("curve-16d", 16)])
def test_the_exact_testbed_runs_through_the_same_commands(tmp_path, name, dim):
    """configs/sfbd/<name>.toml, shortened: SFBD and a baseline on a mixture, scored against the truth."""
    import numpy as np

    root = Path(__file__).resolve().parents[2]
    cfg = config.load(SFBDJobConfig, root / f"configs/sfbd/{name}.toml",
                      [f'out="{tmp_path / "gmm"}"', "data.limit=1010", "sfbd.clean_fraction=0.05", "train.steps=20",
                       "sfbd.rounds=1", "sfbd.forward_steps=10", "fid.n=200", "sample.steps=8", "sfbd.chunk=1000",
                       "sfbd.backward_batch=1000"])
    run_dir = run_sfbd(cfg)
    rounds = Run(run_dir).find("sfbd-eval")
    assert [r["round"] for r in rounds] == [0, 1]
    assert all(r["energy"] > 0 and r["sliced_w2"] > 0 and 0 <= r["mode_tv"] <= 1 and "denoised_energy" in r
               for r in rounds)
    samples = np.load(run_dir / "samples" / "sfbd-samples.npz")["samples"]
    assert samples.dtype == np.float32 and samples.shape == (200, dim, 1, 1)  # float, not uint8 images
    assert (run_dir / "samples" / "denoised-round1.png").exists()
    baseline = baselines.run_baseline(cfg, "noisy-only")
    assert "energy" in Run(baseline).last("noisy-only-eval")
