import dataclasses

import pytest
import torch

from attndiff import UserError, checkpoint
from attndiff.data.images import load
from attndiff.diffusion.edm import Batch, EDMConfig, Precond, edm_loss
from attndiff.diffusion.training import TrainConfig, TrainState, train
from attndiff.diffusion.unet import UNet, UNetConfig
from attndiff.run import Run

UNET = UNetConfig(channels=8, channel_mult=(1, 2), num_blocks=1, attn_levels=())


def _images():
    return load("digits", "train").subset(64, seed=0).images


def _state(cfg):
    torch.manual_seed(0)
    return TrainState(UNet(UNET, 1, 8), cfg)


def _eval_loss(net, images):
    d = Precond(net)
    with torch.no_grad():
        return edm_loss(d, Batch(images), cfg=EDMConfig(), generator=torch.Generator().manual_seed(123)).mean().item()


def test_loss_falls_on_a_tiny_dataset():
    images = _images()
    cfg = TrainConfig(steps=150, batch_size=32, lr=2e-3, warmup_steps=10, precision="fp32")
    state = _state(cfg)
    before = _eval_loss(state.net, images)
    train(state, images, cfg, edm=EDMConfig())
    after = _eval_loss(state.net, images)
    assert after < 0.6 * before, (before, after)


def test_resume_gives_exactly_the_uninterrupted_weights(tmp_path):
    images = _images()
    cfg = TrainConfig(steps=6, batch_size=16, precision="fp32", checkpoint_every=3, log_every=1)
    full = train(_state(cfg), images, cfg, edm=EDMConfig(), run=Run(tmp_path / "a"))

    half = dataclasses.replace(cfg, steps=3)  # the same run, stopped after 3 steps
    train(_state(half), images, half, edm=EDMConfig(), run=Run(tmp_path / "b"))
    resumed = train(_state(cfg), images, cfg, edm=EDMConfig(), run=Run(tmp_path / "b"))

    assert resumed.step == full.step == 6
    a, b = full.tensors(), resumed.tensors()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [r["step"] for r in Run(tmp_path / "b").metrics()]
    assert steps == [1, 2, 3, 4, 5, 6]  # no duplicated or lost metrics records


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    images = _images()
    cfg = TrainConfig(steps=4, batch_size=16, precision="fp32", checkpoint_every=2, keep_checkpoints=3)
    run = Run(tmp_path)
    train(_state(cfg), images, cfg, edm=EDMConfig(), run=run)
    newest = checkpoint.list_checkpoints(run.checkpoints, "train")[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated write
    with pytest.warns(UserWarning, match="damaged"):
        tensors, meta, path = checkpoint.load_latest(run.checkpoints, "train")
    assert meta["step"] == 2 and path.name == "train-00000002.safetensors"


def test_a_pickle_is_not_a_checkpoint(tmp_path):
    import pickle

    bad = tmp_path / "train-00000001.safetensors"
    bad.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(UserError, match="not a readable attndiff checkpoint"):
        checkpoint.load(bad)


def test_nan_loss_stops_with_a_clear_error():
    images = _images()
    cfg = TrainConfig(steps=3, batch_size=8, precision="fp32")
    def nan_loss(denoiser, batch, *, generator):
        return torch.full((len(batch.x),), float("nan"))

    with pytest.raises(UserError, match="loss became nan"):
        train(_state(cfg), images, cfg, edm=EDMConfig(), loss_fn=nan_loss)


def test_a_checkpoint_from_before_the_seed_rule_does_not_resume(tmp_path):
    images = _images()
    cfg = TrainConfig(steps=2, batch_size=16, precision="fp32", checkpoint_every=1)
    run = Run(tmp_path)
    state = _state(cfg)
    old_meta = {"tag": "train", "step": 1}  # no seed_rule: written by attndiff 0.1
    checkpoint.save(run.checkpoints / checkpoint.checkpoint_name("train", 1), state.tensors(), old_meta)
    with pytest.raises(UserError, match="older attndiff whose random streams differ"):
        train(_state(cfg), images, cfg, edm=EDMConfig(), run=run)


def test_extras_reach_the_loss_indexed_like_the_images():
    images = _images()
    index = torch.arange(len(images), dtype=torch.float32)
    seen = []

    def loss(denoiser, batch, *, generator):
        seen.append((batch.x, batch.extras["index"]))
        return denoiser(batch.x, 1.0).square().flatten(1).mean(1)

    cfg = TrainConfig(steps=3, batch_size=16, precision="fp32")
    train(_state(cfg), images, cfg, edm=EDMConfig(), extras={"index": index}, loss_fn=loss)
    for x, idx in seen:
        assert torch.equal(x, images[idx.long()])
