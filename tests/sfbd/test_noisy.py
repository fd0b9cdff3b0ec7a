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
