"""SFBD's backward (denoising) step: the model's own reverse process from sigma_zeta to 0.

A noisy observation y = x + sigma_zeta eps is a draw of x_t at t = sigma_zeta, so the reverse
process started at y samples the model's posterior p(x_0 | x_sigma = y) in stochastic mode
(the paper's statement); deterministic mode integrates the probability-flow ODE with Heun, as
the authors' released code does. The operation is the shared core's `denoise`, the same one
that equivariant image denoising uses; SFBD calls it by the paper's name.
"""

from attndiff.diffusion.sampling import denoise as backward
from attndiff.diffusion.sampling import denoise_sigmas as backward_sigmas

__all__ = ["backward", "backward_sigmas"]
