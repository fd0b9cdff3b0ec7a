"""Stochastic Forward-Backward Deconvolution (SFBD, arXiv 2502.05446): learn a clean diffusion
model from many noisy images and a few clean ones. The sampler, loss and training loop are the
shared EDM core's; this package only composes them."""

from attndiff.sfbd.backward import backward

__all__ = ["backward"]
