import pytest
import torch

from attndiff.data.mixtures import mixture
from attndiff.metrics.distribution import energy_distance, mixture_scores, sliced_wasserstein


def _truth(seed, n=4000):
    return mixture("gmm-2d").sample(n, torch.Generator().manual_seed(seed))[0]


def test_samples_of_the_truth_score_near_zero():
    a, b = _truth(1), _truth(2)
    assert energy_distance(a, b) < 0.002 and sliced_wasserstein(a, b) < 0.03
    scores = mixture_scores(a, mixture("gmm-2d"))
    assert scores["mode_tv"] < 0.03
    assert scores["loglik"] == pytest.approx(float(mixture("gmm-2d").log_prob(b).mean()), abs=0.05)


def test_a_shifted_copy_scores_the_closed_form_distance():
    a = _truth(1)
    delta = torch.tensor([0.3, -0.4])
    # every projection of a translate is the translate: sliced W2 = sqrt(E (theta . delta)^2) = |delta| / sqrt(2)
    assert sliced_wasserstein(a, a + delta, projections=4000) == pytest.approx(0.5 / 2**0.5, rel=0.02)
    assert energy_distance(a, a + delta) > 20 * energy_distance(a, _truth(2))


def test_a_collapsed_model_misses_modes():
    collapsed = _truth(1)[:1].expand(1000, -1)  # every sample the same point: one mode of eight
    assert mixture_scores(collapsed, mixture("gmm-2d"))["mode_tv"] > 0.7
