import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


class GaussianDenoiser:
    """Exact denoiser of N(mu, s^2 I) data: D(x, t) = (s^2 x + t^2 mu) / (s^2 + t^2)."""

    def __init__(self, mu: torch.Tensor, s: float):
        self.mu, self.s = mu, s

    def __call__(self, x, sigma, class_labels=None):
        t2 = torch.as_tensor(sigma, dtype=x.dtype) ** 2
        if t2.ndim:
            t2 = t2.reshape(-1, *([1] * (x.ndim - 1)))
        return (self.s**2 * x + t2 * self.mu) / (self.s**2 + t2)


@pytest.fixture
def gaussian():
    mu = torch.linspace(-0.6, 0.6, 16).reshape(1, 1, 4, 4)
    return GaussianDenoiser(mu, 0.4)
