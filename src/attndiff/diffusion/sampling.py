"""Sigma grids and samplers as pure functions of a denoiser D(x, sigma, class_labels) -> x0_hat.

A grid is data: a decreasing 1-D tensor of sigmas ending in 0. Every sampler has the
signature sampler(denoiser, x, sigmas, *, ...) and integrates from sigmas[0] to 0, so it
starts from pure noise (x = sigma_max * eps) or from a given image at any noise level
(SFBD's backward step, equivariant denoising) alike.

Noise: every random draw goes through a `noise(like)` callable (default: a torch.Generator),
so a caller can give each sample its own seed (`PerSampleNoise`, results independent of
batch size and rank) or transform the injected noise (the symmetry tests).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from attndiff.diffusion.edm import EDMConfig, randn
from attndiff.progress import bar

Noise = Callable[[torch.Tensor], torch.Tensor]  # like -> standard normal tensor of like's shape


def edm_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
               device=None) -> torch.Tensor:
    """The EDM grid (eq. 5): `steps` sigmas from sigma_max to sigma_min, spaced in sigma^(1/rho), then 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv = 1.0 / rho
    sigmas = (sigma_max**inv + ramp * (sigma_min**inv - sigma_max**inv)) ** rho
    if steps == 1:
        sigmas = torch.tensor([sigma_max], dtype=torch.float64)
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float().to(device)


def truncate_sigmas(sigmas: torch.Tensor, sigma: float) -> torch.Tensor:
    """The part of a grid below `sigma`, with `sigma` itself prepended as the starting level."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    below = sigmas[sigmas < sigma]
    return torch.cat([below.new_tensor([sigma]), below])


def gaussian_noise(generator: torch.Generator | None = None) -> Noise:
    return lambda like: randn(like.shape, generator, like.device)


class PerSampleNoise:
    """One generator per sample, seeded by the sample's own seed: the same seed gives the
    same trajectory whatever batch or rank the sample lands in."""

    def __init__(self, seeds: Sequence[int]):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        if len(like) != len(self.generators):
            raise ValueError(f"PerSampleNoise has {len(self.generators)} seeds, got a batch of {len(like)}")
        draws = [torch.randn(like.shape[1:], generator=g) for g in self.generators]
        return torch.stack(draws).to(like.device, like.dtype)


def _steps(sigmas: torch.Tensor, progress: bool | str):
    pairs = list(zip(sigmas[:-1].tolist(), sigmas[1:].tolist()))
    if progress:
        return bar(pairs, desc=progress if isinstance(progress, str) else "sampling")
    return pairs


# Every solver has the same signature: solver(denoiser, x, sigmas, *, churn, noise, class_labels, progress).

@torch.no_grad()
def sample_heun(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, churn: float = 0.0, noise: Noise,
                class_labels=None, progress: bool | str = False) -> torch.Tensor:
    """EDM Algorithm 2: Heun's 2nd-order method; churn > 0 adds noise before each step (stochastic)."""
    n = len(sigmas) - 1
    gamma = min(churn / n, math.sqrt(2) - 1)
    x = x.float()
    for t_cur, t_next in _steps(sigmas, progress):
        t_hat = t_cur * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(t_hat**2 - t_cur**2) * noise(x)
        d = (x - denoiser(x, t_hat, class_labels)) / t_hat
        x_next = x + (t_next - t_hat) * d
        if t_next > 0:  # 2nd-order correction (skipped on the last step to 0)
            d_next = (x_next - denoiser(x_next, t_next, class_labels)) / t_next
            x_next = x + (t_next - t_hat) * (d + d_next) / 2
        x = x_next
    return x


def _exponential_step(x, t: float, s: float, d: torch.Tensor, slope: torch.Tensor | None, z: torch.Tensor):
    """x_s of the reverse SDE from x_t, with D(lambda) = d + (lambda - lambda_t) slope over the step.

    lambda = -log sigma, h = log(t / s), r = (s / t)^2. Integrating the linear part exactly,
        x_s = r x_t + (1 - r) d + (h - (1 - r) / 2) slope + s sqrt(1 - r) z,
    exact when D is linear in lambda along the path (slope None: constant, the ancestral step).
    """
    r = (s / t) ** 2
    out = r * x + (1 - r) * d + s * math.sqrt(1 - r) * z
    if slope is not None:
        out = out + (math.log(t / s) - (1 - r) / 2) * slope
    return out


def _no_churn(churn: float) -> None:
    if churn:
        raise ValueError("churn applies to the deterministic (Heun) solver; the reverse SDE injects its own noise")


@torch.no_grad()
def sample_sde(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, churn: float = 0.0, noise: Noise,
               class_labels=None, progress: bool | str = False) -> torch.Tensor:
    """The reverse SDE of x_t = x_0 + t eps, one ancestral step per grid interval.

    From t to s < t it draws x_s ~ q(x_s | x_t, x_0 = D(x_t, t)), i.e. mean x0 + (s/t)^2 (x_t - x0)
    and variance s^2 (t^2 - s^2) / t^2. Started at a noisy y at sigma it samples the model's
    posterior p(x_0 | x_sigma = y) (exact as the grid is refined); the final step to 0 returns D.
    It injects its own noise at every step, so EDM's churn does not apply.
    """
    _no_churn(churn)
    x = x.float()
    for t, s in _steps(sigmas, progress):
        x0 = denoiser(x, t, class_labels)
        if s == 0:
            x = x0
            continue
        x = _exponential_step(x, t, s, x0, None, noise(x))
    return x


@torch.no_grad()
def sample_sde_2m(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, churn: float = 0.0, noise: Noise,
                  class_labels=None, progress: bool | str = False) -> torch.Tensor:
    """The reverse SDE with a second-order mean at one network evaluation per step: D is
    extrapolated linearly in lambda = -log sigma from the previous step (a multistep scheme of the
    SDE-DPM-Solver++(2M) family, Lu et al. 2022); the first step is the ancestral one."""
    _no_churn(churn)
    x, previous = x.float(), None  # previous: (lambda, D) of the last step
    for t, s in _steps(sigmas, progress):
        d = denoiser(x, t, class_labels)
        if s == 0:
            return d
        slope = None if previous is None else (d - previous[1]) / (-math.log(t) - previous[0])
        x = _exponential_step(x, t, s, d, slope, noise(x))
        previous = (-math.log(t), d)
    return x


@torch.no_grad()
def sample_sde_heun(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, churn: float = 0.0, noise: Noise,
                    class_labels=None, progress: bool | str = False) -> torch.Tensor:
    """The reverse SDE with a predictor-corrector step (two network evaluations per step): an
    ancestral predictor to x_hat_s, then the same step with D linear in lambda between D(x_t, t)
    and D(x_hat_s, s), with the same noise draw (a stochastic Heun scheme)."""
    _no_churn(churn)
    x = x.float()
    for t, s in _steps(sigmas, progress):
        d = denoiser(x, t, class_labels)
        if s == 0:
            return d
        z = noise(x)
        predicted = _exponential_step(x, t, s, d, None, z)
        slope = (denoiser(predicted, s, class_labels) - d) / math.log(t / s)
        x = _exponential_step(x, t, s, d, slope, z)
    return x


SDE_SCHEMES = {"ancestral": sample_sde, "ancestral-2m": sample_sde_2m, "heun": sample_sde_heun}
SDE_EVALUATIONS = {"ancestral": 1, "ancestral-2m": 1, "heun": 2}  # network evaluations per step (the last: 1)


def evaluations(steps: int, *, stochastic: bool, scheme: str = "ancestral") -> int:
    """Network evaluations of one sampler call over a grid of `steps` intervals (the last ends at 0)."""
    per_step = SDE_EVALUATIONS[scheme] if stochastic else 2
    return per_step * (steps - 1) + 1


def sample(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, stochastic: bool = False, churn: float = 0.0,
           scheme: str = "ancestral", noise: Noise | None = None, generator: torch.Generator | None = None,
           class_labels=None, progress: bool | str = False) -> torch.Tensor:
    """Run the reverse process along `sigmas` from x at sigmas[0] down to 0.

    stochastic=False: the probability-flow ODE with Heun (EDM Alg. 2; churn > 0 adds EDM's
    stochastic churn); stochastic=True: the reverse SDE, by `scheme` (SDE_SCHEMES: ancestral,
    ancestral-2m, heun), a posterior sample when started from a noisy image.
    """
    if stochastic and scheme not in SDE_SCHEMES:
        raise ValueError(f"unknown SDE scheme {scheme!r} (known: {', '.join(SDE_SCHEMES)})")
    solver = SDE_SCHEMES[scheme] if stochastic else sample_heun
    return solver(denoiser, x, sigmas, churn=churn, noise=noise or gaussian_noise(generator),
                  class_labels=class_labels, progress=progress)


def _in_batches(n: int, start_points: Callable[[slice, Noise], torch.Tensor], denoiser, sigmas: torch.Tensor, *,
                seeds: Sequence[int] | None, noise: Noise | None, batch_size: int, device,
                class_labels: torch.Tensor | None, progress: bool | str, desc: str, **sampler_kwargs) -> torch.Tensor:
    """sample() over n starting points in batches (the one batching loop of generate and denoise).

    With `seeds`, item i draws all its noise from its own seed seeds[i], so a result does not depend
    on the batch or rank it lands in; otherwise the shared `noise` drives every batch.
    """
    out = []
    progress_bar = bar(total=n, desc=progress if isinstance(progress, str) else desc, unit="img",
                       disable=not progress)
    for start in range(0, n, batch_size):
        part = slice(start, min(start + batch_size, n))
        batch_noise = PerSampleNoise(seeds[part]) if seeds is not None else noise
        labels = None if class_labels is None else class_labels[part].to(device)
        x = start_points(part, batch_noise).to(device)
        out.append(sample(denoiser, x, sigmas.to(device), noise=batch_noise, class_labels=labels,
                          **sampler_kwargs).cpu())
        progress_bar.update(part.stop - part.start)
    progress_bar.close()
    return torch.cat(out)


@torch.no_grad()
def generate(denoiser, n: int, shape: Sequence[int], sigmas: torch.Tensor, *, seeds: Sequence[int] | None = None,
             batch_size: int = 256, device="cpu", class_labels: torch.Tensor | None = None,
             progress: bool | str = True, stochastic: bool = False, churn: float = 0.0) -> torch.Tensor:
    """n samples from pure noise, in batches; sample i uses seed seeds[i] (default i), so the
    result does not depend on batch_size."""
    seeds = list(range(n)) if seeds is None else list(seeds)

    def pure_noise(part: slice, noise: Noise) -> torch.Tensor:
        return noise(torch.empty(part.stop - part.start, *shape, device=device)) * sigmas[0].item()

    return _in_batches(n, pure_noise, denoiser, sigmas, seeds=seeds, noise=None, batch_size=batch_size,
                       device=device, class_labels=class_labels, progress=progress, desc="generating",
                       stochastic=stochastic, churn=churn)


GRIDS = ("below", "truncated")
FLOOR = 0.05  # the "below" grid ends at FLOOR * sigma: see denoise_sigmas


def denoise_sigmas(sigma: float, steps: int, edm: EDMConfig = EDMConfig(), grid: str = "below") -> torch.Tensor:
    """The sigma grid of denoising from level sigma, then 0.

    grid "below": `steps` points from sigma down to FLOOR * sigma (at least edm.sigma_min),
    spaced in sigma^(1/rho), so every step is spent below sigma and the steps stay short in
    log sigma (the second-order SDE scheme needs that). Its last step returns D at the floor, the
    posterior mean there: it leaves out the posterior variance below FLOOR * sigma (at sigma 0.59,
    noise of std 0.03, about 4/255 of the pixel range). "truncated": the EDM grid of `steps`
    points from sigma_max, truncated at sigma with sigma prepended (the SFBD authors' code: of 40
    points, 14 lie below 0.59).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if grid == "below":  # at or under sigma_min there is nothing to step through: one step to D
        floor = max(FLOOR * sigma, edm.sigma_min)
        return edm_sigmas(steps, floor, sigma, edm.rho) if steps > 1 and floor < sigma else torch.tensor([sigma, 0.0])
    if grid == "truncated":
        return truncate_sigmas(edm_sigmas(steps, edm.sigma_min, edm.sigma_max, edm.rho), sigma)
    raise ValueError(f"unknown grid {grid!r} (known: {', '.join(GRIDS)})")


@torch.no_grad()
def denoise(denoiser, y: torch.Tensor, sigma: float, *, steps: int = 15, stochastic: bool = True,
            scheme: str = "ancestral-2m", grid: str = "below", generator: torch.Generator | None = None,
            seeds: Sequence[int] | None = None, noise: Noise | None = None, edm: EDMConfig = EDMConfig(),
            batch_size: int = 256, device="cpu", progress: bool | str = False) -> torch.Tensor:
    """Denoise images y that carry Gaussian noise of std `sigma`: the reverse process from sigma to 0.

    In the variance-exploding parametrisation x_t = x_0 + t eps, y *is* a draw of x_t at t = sigma,
    so the reverse SDE started at y samples the model's posterior p(x_0 | x_sigma = y)
    (stochastic=True); stochastic=False integrates the probability-flow ODE with Heun, which maps
    the noisy marginal onto the model's data marginal but does not sample the posterior. SFBD's
    backward step and equivariant image denoising are both this function.

    steps, grid: the sigma grid (`denoise_sigmas`); scheme: the SDE scheme (SDE_SCHEMES). The
    defaults (15 points below sigma, ancestral-2m: 15 network evaluations) sample the posterior of
    a per-pixel Gaussian mixture with the variance within 5% and a KS distance below 0.03
    (benchmarks/backward_accuracy.py); the first-order ancestral step at that cost gives 62-87%
    of the posterior variance.
    seeds: one seed per image (e.g. derived from its dataset index), so that each image's result
    does not depend on the batch or rank it is processed in; else `noise` (a callable, for one
    batch) or `generator` drives the injected noise.
    """
    if seeds is not None and len(seeds) != len(y):
        raise ValueError(f"need one seed per image: {len(seeds)} seeds for {len(y)} images")
    if noise is not None and len(y) > batch_size:
        raise ValueError("a noise callable covers one batch: pass seeds for more images than batch_size")
    if len(y) == 0:
        return y.new_empty(y.shape)
    return _in_batches(len(y), lambda part, _: y[part], denoiser, denoise_sigmas(sigma, steps, edm, grid),
                       seeds=seeds, noise=noise or gaussian_noise(generator), batch_size=batch_size, device=device,
                       class_labels=None, progress=progress, desc="denoising", stochastic=stochastic, scheme=scheme)
