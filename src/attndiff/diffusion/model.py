"""Model recipes: how one kind of diffusion model is built, trained and sampled.

A recipe is a typed registry entry with three parts over the shared core:

    build(unet, shape, options) -> net          the raw network F (a UNet, or a constrained one)
    loss(edm, options, target) -> Loss          its training loss; `target` is the EMA denoiser
    sampler(denoiser, options) -> denoiser      the denoiser it samples and denoises with

`options` are the recipe's own settings (the [symmetry] section for the structure-preserving
recipes), opaque to the core. The core registers the plain EDM recipe, "none"; the symmetry
package registers augment, wt, regular, fa and reg when it is imported. A job asks `ModelSpec` for the
network, loss and sampling denoiser of its config and never needs to know which recipe it has:
that is how SFBD trains equivariant models without importing the symmetry package.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import torch
from torch import nn

from attndiff import UserError, onnx_runtime
from attndiff.diffusion.edm import EDMConfig, Loss, Precond, edm_loss
from attndiff.diffusion.inference import OnnxNet
from attndiff.diffusion.mlp import MLP
from attndiff.diffusion.unet import PLAIN, Layers, UNet, UNetConfig, count_parameters
from attndiff.precision import autocast_dtype

Shape = tuple[int, int, int]
BACKENDS = ("auto", "onnx", "torch")
# With backend "auto", smaller networks stay in torch: an export (about a second, again after every
# weight change) is repaid only after many evaluations of a small network (the tests' 64k-parameter
# UNet: about 158,000 image evaluations; the default 1.07M one at 28x28: about 190;
# benchmarks/README.md, throughput-inference).
ONNX_MIN_PARAMETERS = 100_000


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    equivariant: bool  # its sampling denoiser is exactly equivariant under the options' group
    build: Callable[[UNetConfig, Shape, Any], nn.Module]
    loss: Callable[[EDMConfig, Any, Callable | None], Loss]
    sampler: Callable[[Callable, Any], Callable]
    edm_loss: bool = True  # trains with the plain EDM loss (so a job may swap in another loss, e.g. ambient)


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in RECIPES:
        raise ValueError(f"a recipe named {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UserError(f"unknown model method {name!r} (known: {', '.join(RECIPES)})")
    return RECIPES[name]


def network(cfg: UNetConfig, shape: Shape, layers: Layers | None = None) -> nn.Module:
    """The network for data of `shape`: the UNet for square images (C, H, W), built from `layers`
    (plain ones by default), or a residual MLP for vectors stored as (D, 1, 1) (the exact
    testbed's mixtures)."""
    c, h, w = shape
    if (h, w) == (1, 1):
        if layers is not None:
            raise UserError("this model method needs images; vectors get the plain MLP (method none)")
        return MLP(cfg, c)
    if h != w:
        raise UserError(f"images must be square, got {h}x{w}")
    return UNet(cfg, c, h, layers or PLAIN)


register(Recipe("none", equivariant=False, build=lambda cfg, shape, options: network(cfg, shape),
                loss=lambda edm, options, target: functools.partial(edm_loss, cfg=edm),
                sampler=lambda denoiser, options: denoiser))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything that makes a network of a config into a trained and sampled diffusion model."""

    recipe: Recipe
    options: Any
    unet: UNetConfig
    edm: EDMConfig
    shape: Shape
    precision: str = "auto"
    device: str = "cpu"
    backend: str = "auto"  # the sampling network: see `inference_net`

    def new_net(self) -> nn.Module:
        return self.recipe.build(self.unet, self.shape, self.options).to(self.device)

    def denoiser(self, net: nn.Module) -> Precond:
        """The raw network as an EDM denoiser, in the spec's precision on its device."""
        return Precond(net, self.edm.sigma_data, autocast_dtype(self.precision, self.device))

    def sampling_denoiser(self, net: nn.Module):
        """The denoiser the recipe samples and denoises with (e.g. frame-averaged)."""
        return self.recipe.sampler(self.denoiser(self.inference_net(net)), self.options)

    def inference_net(self, net: nn.Module) -> nn.Module:
        """The network that sampling calls: the plain UNet in fp32 on the CPU runs in ONNX Runtime
        (faster; attndiff.diffusion.inference) when onnxruntime is installed, with backend "onnx",
        or "auto" if it has at least ONNX_MIN_PARAMETERS; every other model, and backend "torch",
        runs `net` itself."""
        if self.backend not in BACKENDS:
            raise UserError(f"sample.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "torch":
            return net
        fits = (self.recipe.name == "none" and isinstance(net, UNet) and torch.device(self.device).type == "cpu"
                and autocast_dtype(self.precision, self.device) is None)
        if fits and onnx_runtime.available():
            return OnnxNet(net) if self.backend == "onnx" or count_parameters(net) >= ONNX_MIN_PARAMETERS else net
        if self.backend == "onnx":
            raise UserError("sample.backend = onnx needs the plain UNet in fp32 on the CPU and onnxruntime and onnx: "
                            f"`{onnx_runtime.INSTALL}`")
        return net

    def loss(self, ema: nn.Module | None = None) -> Loss:
        """The recipe's training loss; `ema` is the EMA network some recipes regularise against."""
        return self.recipe.loss(self.edm, self.options, self.denoiser(ema) if ema is not None else None)


def load_weights(net: nn.Module, tensors: dict[str, torch.Tensor], *, use_ema: bool = True) -> nn.Module:
    """Load a training checkpoint's EMA (or raw) weights into `net`."""
    prefix = "ema." if use_ema else "net."
    net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return net
