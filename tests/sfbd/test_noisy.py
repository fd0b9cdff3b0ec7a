import pytest
import torch

from attndiff import UserError
from attndiff.data.images import load
from attndiff.sfbd.noisy import frozen_noise, make_noisy_split


def test_split_is_disjoint_seeded_and_noise_is_frozen():
    data = load("digits", "train")
    a = make_noisy_split(data, clean_fraction=0.04, sigma_zeta=0.59, seed=1)
    b = make_noisy_split(data, clean_fraction=0.04, sigma_zeta=0.59, seed=1)
    assert len(a.clean) == round(0.04 * len(data)) and len(a.clean) + len(a.noisy) == len(data)
    assert torch.equal(a.noisy, b.noisy)
    # clean and noisy images are different images
    clean_rows = {tuple(r.tolist()) for r in a.clean.images.flatten(1)}
    assert not any(tuple(r.tolist()) in clean_rows for r in a.originals.images.flatten(1))
    # the noise is the stated amount on top of the held-back originals
    noise = (a.noisy - a.originals.images) / 0.59
    assert abs(noise.std().item() - 1) < 0.02 and abs(noise.mean().item()) < 0.02
    torch.testing.assert_close(noise, frozen_noise(a.noisy_index, data.shape, 1))
    # a different seed gives a different split and noise
    c = make_noisy_split(data, clean_fraction=0.04, sigma_zeta=0.59, seed=2)
    assert not torch.equal(a.noisy_index, c.noisy_index)


def test_noise_depends_on_the_image_index_not_on_the_order():
    idx = torch.tensor([5, 9, 2])
    full = frozen_noise(idx, (1, 4, 4), seed=0)
    torch.testing.assert_close(frozen_noise(torch.tensor([2]), (1, 4, 4), seed=0)[0], full[2])


@pytest.mark.parametrize("kwargs,message", [
    ({"clean_fraction": 0.0}, "clean_fraction"), ({"clean_fraction": 1.5}, "clean_fraction"),
    ({"sigma_zeta": 0.0}, "sigma_zeta"), ({"sigma_zeta": -1.0}, "sigma_zeta"),
])
def test_out_of_range_settings_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        make_noisy_split(load("digits", "train"), **kwargs)


def test_the_noise_estimate_is_exact_on_pure_noise_and_close_on_digits_at_high_noise():
    from attndiff.sfbd.noisy import estimate_sigma

    noise = torch.randn(200, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert estimate_sigma(0.37 * noise) == pytest.approx(0.37, rel=0.02)
    mnist = load("mnist", "train").subset(300, 0).images
    noisy = mnist + 0.59 * torch.randn(mnist.shape, generator=torch.Generator().manual_seed(1))
    assert estimate_sigma(noisy) == pytest.approx(0.59, rel=0.06)  # benchmarks/noise_estimate.py: +2.6%
    with pytest.raises(UserError, match="NaN"):
        estimate_sigma(torch.full((2, 1, 4, 4), float("nan")))


def test_noise_command_writes_unclipped_floats_that_estimate_noise_reads(tmp_path, capsys):
    import numpy as np

    from attndiff.cli import main

    out = tmp_path / "noisy.npz"
    assert main(["sfbd", "noise", "--data", "mnist", "--limit", "200", "--sigma", "0.59", "--out", str(out)]) == 0
    with np.load(out) as z:
        assert z["images"].dtype == np.float32 and z["images"].shape == (200, 1, 28, 28)
        assert float(z["sigma_zeta"]) == 0.59 and (np.abs(z["images"]) > 1).any()  # not clipped
    assert main(["sfbd", "estimate-noise", str(out)]) == 0
    assert "the file records 0.59" in capsys.readouterr().out
    np.savez(tmp_path / "u8.npz", images=np.zeros((4, 1, 8, 8), np.uint8))
    assert main(["sfbd", "estimate-noise", str(tmp_path / "u8.npz")]) == 2
    assert "must be stored as floats" in capsys.readouterr().err
