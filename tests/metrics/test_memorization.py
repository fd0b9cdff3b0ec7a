import pytest
import torch

from attndiff.data.images import load
from attndiff.metrics.memorization import copy_rate, nearest_two


@pytest.fixture(scope="module")
def digits():
    return load("digits", "train").images[:200], load("digits", "test").images[:100]


def test_nearest_two_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    x, ref = torch.randn(7, 1, 3, 3, generator=g), torch.randn(11, 1, 3, 3, generator=g)
    d = nearest_two(x, ref, batch_size=3)
    direct = ((x.flatten(1)[:, None] - ref.flatten(1)[None]) ** 2).sum(-1).sqrt().sort(1).values[:, :2]
    torch.testing.assert_close(d, direct, rtol=1e-5, atol=1e-5)


def test_copies_of_training_images_count_and_held_out_images_do_not(digits):
    train, test = digits
    g = torch.Generator().manual_seed(1)
    copies = train[:50] + 0.01 * torch.randn(train[:50].shape, generator=g)
    assert copy_rate(copies, train)["copy_rate"] == 1.0
    assert copy_rate(train[:50], train)["nn_rms"] == 0.0
    held_out = copy_rate(test, train)
    assert held_out["copy_rate"] < 0.05 and held_out["nn_rms"] > 0.1
    half = copy_rate(torch.cat([copies, test[:50]]), train)["copy_rate"]
    assert half == pytest.approx(0.5, abs=0.03)


def test_the_ratio_test_needs_two_reference_images(digits):
    with pytest.raises(ValueError, match="at least 2"):
        copy_rate(digits[1][:3], digits[0][:1])
