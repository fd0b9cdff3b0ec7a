import math

import torch

from attndiff.diffusion.edm import Batch, EDMConfig, Precond, append_dims, edm_loss, preconditioning


def test_preconditioning_matches_edm_table_1():
    sd = 0.5
    for s in (0.002, 0.1, 0.5, 2.0, 80.0):
        c_skip, c_out, c_in, c_noise = preconditioning(torch.tensor(s), sd)
        assert math.isclose(c_skip, sd**2 / (s**2 + sd**2), rel_tol=1e-6)
        assert math.isclose(c_out, s * sd / math.sqrt(s**2 + sd**2), rel_tol=1e-6)
        assert math.isclose(c_in, 1 / math.sqrt(s**2 + sd**2), rel_tol=1e-6)
        assert math.isclose(c_noise, math.log(s) / 4, rel_tol=1e-6)
        # the design goals behind the table: unit-variance network input and training target
        assert math.isclose(c_in**2 * (sd**2 + s**2), 1.0, rel_tol=1e-5)
        target_var = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * s**2) / c_out**2
        assert math.isclose(target_var, 1.0, rel_tol=1e-4)


def test_precond_with_zero_network_is_c_skip_times_input():
    class Zero(torch.nn.Module):
        def forward(self, x, c_noise, labels=None):
            return torch.zeros_like(x)

    x = torch.randn(3, 1, 4, 4)
    d = Precond(Zero(), 0.5)(x, torch.tensor([0.1, 1.0, 10.0]))
    c_skip = preconditioning(torch.tensor([0.1, 1.0, 10.0]), 0.5)[0]
    torch.testing.assert_close(d, append_dims(c_skip, 4) * x)


def test_loss_is_per_sample_and_zero_for_the_exact_denoiser_of_a_point_mass():
    x = torch.full((5, 1, 4, 4), 0.3)
    exact = lambda noisy, sigma, labels=None: torch.full_like(noisy, 0.3)  # noqa: E731
    loss = edm_loss(exact, Batch(x), cfg=EDMConfig(), generator=torch.Generator().manual_seed(0))
    assert loss.shape == (5,)
    assert loss.abs().max() < 1e-10
    wrong = lambda noisy, sigma, labels=None: torch.zeros_like(noisy)  # noqa: E731
    assert (edm_loss(wrong, Batch(x), cfg=EDMConfig()) > 0).all()
