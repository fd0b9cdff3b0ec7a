"""SFBD on a noisy set you bring: the same code path as the simulated split, and its refusals."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from attndiff import UserError, config
from attndiff.cli import main
from attndiff.jobs.sfbd import SFBDJobConfig, load_split, run_sfbd
from attndiff.jobs.sfbd_baselines import run_baseline
from attndiff.jobs.sfbd_data import noise_dataset
from attndiff.run import Run
from tests.jobs.test_sfbd import TINY, final_weights, tiny

CONFIG = Path(__file__).parents[2] / "configs/sfbd/mnist-cpu.toml"


def own_files(tmp_path, cfg: SFBDJobConfig):
    """What a user holds after `sfbd noise` on their data: the noisy images (here those the
    simulated run would noise, with their index) and a clean set (float npz)."""
    everything = noise_dataset("digits", tmp_path / "all-noisy.npz", sigma=cfg.sfbd.sigma_zeta, seed=0, limit=200)
    split = load_split(cfg)
    with np.load(everything) as z:
        keep = split.noisy_index.numpy()
        np.savez(tmp_path / "noisy.npz", images=z["images"][keep], index=z["index"][keep], sigma_zeta=z["sigma_zeta"])
    np.savez(tmp_path / "clean.npz", images=split.clean.images.numpy())
    return tmp_path / "noisy.npz", tmp_path / "clean.npz"


def own(tmp_path, noisy, clean, *extra) -> SFBDJobConfig:
    return config.load(SFBDJobConfig, None, TINY + [f'out="{tmp_path}"', f'sfbd.noisy_data="{noisy}"',
                                                    f'sfbd.clean_data="npz:{clean}"', *extra])


def test_own_noisy_file_reproduces_the_simulated_run_bit_for_bit(tmp_path):
    simulated = tiny(tmp_path / "simulated")
    noisy, clean = own_files(tmp_path, simulated)
    split, mine = load_split(simulated), load_split(own(tmp_path / "own", noisy, clean))
    assert torch.equal(split.noisy, mine.noisy) and torch.equal(split.clean.images, mine.clean.images)
    assert mine.originals is None
    a, b = final_weights(run_sfbd(simulated)), final_weights(run_sfbd(own(tmp_path / "own", noisy, clean)))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rounds = Run(tmp_path / "own").find("sfbd-eval")
    assert [r["round"] for r in rounds] == [0, 1, 2] and all("denoised_psnr" not in r for r in rounds)
    assert all(abs(r["denoised_std_ratio"] - 1) < 1 for r in rounds[1:])
    assert "without originals" in (tmp_path / "own" / "report.html").read_text()


def test_own_data_is_checked_before_anything_runs(tmp_path, capsys):
    simulated = tiny(tmp_path / "simulated")
    noisy, clean = own_files(tmp_path, simulated)
    with pytest.raises(UserError, match="set sfbd.sigma_zeta = 0.59"):
        load_split(own(tmp_path / "r", noisy, clean, "sfbd.sigma_zeta=0.3"))
    with pytest.raises(UserError, match="go together"):
        config.load(SFBDJobConfig, None, TINY + [f'sfbd.noisy_data="{noisy}"'])
    with pytest.raises(UserError, match="name the FID reference"):
        own(tmp_path / "r", noisy, clean, "fid.n=8")
    with pytest.raises(UserError, match="not image files"):
        load_split(own(tmp_path / "r", "folder:/somewhere", clean))
    with pytest.raises(UserError, match="oracle baseline"):
        run_baseline(own(tmp_path / "r", noisy, clean), "oracle")
    with np.load(noisy) as z:
        images = z["images"]
    for name, arrays, message in [("u8", {"images": np.zeros((4, 1, 8, 8), np.uint8)}, "must be stored as floats"),
                                  ("nan", {"images": np.full((4, 1, 8, 8), np.nan, np.float32)}, "NaN"),
                                  ("flat", {"images": np.zeros((4, 64), np.float32)}, r"\(N, C, H, W\)"),
                                  ("none", {"images": np.zeros((0, 1, 8, 8), np.float32)}, "non-empty"),
                                  ("index", {"images": images, "index": np.zeros(len(images), np.int64)}, "once"),
                                  ("shape", {"images": np.zeros((4, 1, 9, 9), np.float32)}, "one shape")]:
        np.savez(tmp_path / f"{name}.npz", **arrays)
        argv = ["sfbd", "run", "--config", str(CONFIG), *sum((["--set", s] for s in TINY), []),
                "--set", f'out="{tmp_path / name}"', "--set", f'sfbd.noisy_data="{tmp_path / name}.npz"',
                "--set", f'sfbd.clean_data="npz:{clean}"']
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(message, err[0]), (name, err)
        assert not list((tmp_path / name / "checkpoints").glob("*")) if (tmp_path / name).exists() else True


def test_a_sigma_far_from_the_estimate_is_warned_about(tmp_path, capsys):
    simulated = tiny(tmp_path / "simulated")
    noisy, clean = own_files(tmp_path, simulated)
    with np.load(noisy) as z:
        np.savez(tmp_path / "unlabelled.npz", images=z["images"])  # no recorded sigma: the config's is taken
    load_split(own(tmp_path / "r", tmp_path / "unlabelled.npz", clean, "sfbd.sigma_zeta=0.2"))
    assert "warning: the noise std estimated" in capsys.readouterr().err
    load_split(own(tmp_path / "r", tmp_path / "unlabelled.npz", clean))
    assert "warning" not in capsys.readouterr().err
