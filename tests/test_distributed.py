"""torchrun with 2 CPU ranks (gloo) against one process: DDP training and the sharded SFBD backward step.

Two ranks split each global batch into 2 shards with their own noise streams; one process with
train.grad_accum = 2 draws the same shards one after the other, so both must take the same steps.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from attndiff import checkpoint
from attndiff.cli import main
from attndiff.run import Run

TINY = ["data.name=digits", "data.limit=240", "unet.channels=8", "unet.channel_mult=[1, 2]",
        "unet.attn_levels=[1]", "train.batch_size=16", "train.precision=fp32", "train.warmup_steps=2",
        "train.log_every=1", "sample.steps=3", "sample.grid=4", "fid.n=0"]
SFBD = ["train.steps=4", "train.checkpoint_every=2", "sfbd.clean_fraction=0.25", "sfbd.rounds=1",
        "sfbd.forward_steps=3", "sfbd.forward_warmup_steps=1", "sfbd.backward_steps=8", "sfbd.chunk=40",
        "sfbd.backward_batch=40", "sfbd.denoised_fid_n=0"]


def sets(*overrides):
    return [a for o in overrides for a in ("--set", o)]


def torchrun(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "attndiff", *args], capture_output=True, text=True, timeout=600, env=env, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def weights(run_dir, tag):
    tensors, meta, _ = checkpoint.load_latest(run_dir / "checkpoints", tag)
    return tensors, meta


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_two_rank_training_takes_the_steps_of_one_process_with_two_shards(tmp_path):
    common = ["train", "--config", "configs/train/mnist-cpu.toml",
              *sets(*TINY, "train.steps=4", "train.checkpoint_every=2")]
    torchrun(*common, *sets(f'out="{tmp_path / "ddp"}"'))
    assert main([*common, *sets(f'out="{tmp_path / "one"}"', "train.grad_accum=2")]) == 0
    assert main([*common, *sets(f'out="{tmp_path / "other-noise"}"')]) == 0

    ddp, meta = weights(tmp_path / "ddp", "train")
    one, _ = weights(tmp_path / "one", "train")
    assert meta["step"] == 4
    same = max_difference(ddp, one)
    different = max_difference(ddp, weights(tmp_path / "other-noise", "train")[0])
    assert same < 1e-5, same  # float summation order only
    assert different > 100 * same, (same, different)  # the comparison can tell other draws apart
    steps = [r["step"] for r in Run(tmp_path / "ddp").metrics() if r.get("tag") == "train"]
    assert steps == [1, 2, 3, 4]  # rank 0 alone logged
    assert (tmp_path / "ddp" / "report.html").exists()


def test_sharded_backward_step_denoises_every_image_once_as_one_process_would(tmp_path):
    common = ["sfbd", "run", "--config", "configs/sfbd/mnist-cpu.toml", *sets(*TINY, *SFBD)]
    torchrun(*common, *sets(f'out="{tmp_path / "ddp"}"'))
    assert main([*common, *sets(f'out="{tmp_path / "one"}"', "train.grad_accum=2")]) == 0

    def denoised(run_dir):
        files = sorted((run_dir / "denoised" / "round1").glob("*.npz"))
        arrays = [np.load(f) for f in files]
        return np.concatenate([a["index"] for a in arrays]), np.concatenate([a["denoised"] for a in arrays])

    index, images = denoised(tmp_path / "ddp")
    index_one, images_one = denoised(tmp_path / "one")
    assert len(index) == 180 and len(np.unique(index)) == 180  # 240 images, 25% clean: 180 noisy
    np.testing.assert_array_equal(index, index_one)
    assert np.abs(images - images_one).max() < 1e-4  # the models differ by float rounding only

    records = Run(tmp_path / "ddp").metrics()
    backward = [r for r in records if r.get("tag") == "backward"]
    assert [(r["images"], r["ranks"]) for r in backward] == [(180, 2)]  # computed once, not once per rank
    assert [r["round"] for r in records if r.get("tag") == "sfbd-eval"] == [0, 1]
    assert max_difference(weights(tmp_path / "ddp", "round1")[0], weights(tmp_path / "one", "round1")[0]) < 1e-4


@pytest.mark.parametrize("batch,accum", [(15, 2), (16, 3)])
def test_a_batch_that_does_not_split_into_the_shards_is_refused(tmp_path, capsys, batch, accum):
    args = ["train", *sets(*TINY, f'out="{tmp_path}"', f"train.batch_size={batch}", f"train.grad_accum={accum}")]
    assert main(args) == 2
    assert "train.batch_size" in capsys.readouterr().err
    assert not tmp_path.exists() or not list(tmp_path.rglob("*.safetensors"))


def test_structure_preserving_training_runs_under_torchrun(tmp_path):
    out = tmp_path / "wt"
    torchrun("spd", "train", "--method", "wt", "--group", "C4",
             *sets(*TINY, "data.name=c4-mnist", "data.limit=64", "train.steps=3",
                   "symmetry_metrics.orientation_shares=false", f'out="{out}"'))
    records = Run(out).metrics()
    assert [r["step"] for r in records if r.get("tag") == "spd"] == [1, 2, 3]
    (symmetry,) = [r for r in records if r.get("tag") == "spd-symmetry"]
    assert symmetry["equivariance_error"] < 1e-5  # the tied kernels stayed tied under DDP


def test_every_rank_resumes_from_rank_0s_checkpoint(tmp_path):
    common = ["train", "--config", "configs/train/mnist-cpu.toml", *sets(*TINY, "train.checkpoint_every=2")]
    torchrun(*common, *sets(f'out="{tmp_path / "straight"}"', "train.steps=4"))
    torchrun(*common, *sets(f'out="{tmp_path / "stopped"}"', "train.steps=2"))
    r = torchrun(*common, *sets(f'out="{tmp_path / "stopped"}"', "train.steps=4"))
    assert "resuming train from train-00000002" in r.stdout
    straight, resumed = weights(tmp_path / "straight", "train")[0], weights(tmp_path / "stopped", "train")[0]
    assert max_difference(straight, resumed) == 0.0  # both ranks continued from the same state
    assert [r["step"] for r in Run(tmp_path / "stopped").metrics() if r.get("tag") == "train"] == [1, 2, 3, 4]
