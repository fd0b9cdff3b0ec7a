import pytest
import torch

from attndiff.data.images import load
from attndiff.symmetry import groups
from attndiff.symmetry.metrics import equivariance_error, invariance_score, orientation_shares

from .conftest import tiny_denoiser

C4 = groups.get("C4")


def test_orientation_shares_name_the_rotation_of_each_sample(asymmetric_images):
    reference = asymmetric_images
    samples = torch.cat([torch.rot90(reference, 1, (-2, -1)), reference, torch.rot90(reference[:1], 2, (-2, -1))])
    shares = orientation_shares(samples, reference, C4)
    assert shares == pytest.approx({"rot0": 3 / 7, "rot90": 3 / 7, "rot180": 1 / 7, "rot270": 0.0})


def test_equivariance_error_separates_tied_from_plain(asymmetric_images):
    assert equivariance_error(tiny_denoiser(16, tie=C4), asymmetric_images, C4) < 1e-5
    assert equivariance_error(tiny_denoiser(16), asymmetric_images, C4) > 1e-2


def test_invariance_score_is_zero_for_a_closed_orbit_and_large_for_upright_digits():
    upright = load("mnist", "test").images[:16]
    orbit = C4.orbit(upright[:4])  # as a set, g(orbit) = orbit for every g
    assert invariance_score(orbit, C4, progress=False) < 1e-3
    assert invariance_score(upright, C4, progress=False) > 20
    assert invariance_score(upright, groups.get("trivial"), progress=False) == 0.0
