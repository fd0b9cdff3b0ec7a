"""The structure-preserving model of a config, as every job uses it (`attndiff spd train`, and
`attndiff sfbd run` with a [symmetry] section).

Methods (all with the same UNet, loss, training loop and sampler):
    none     the plain UNet
    augment  the plain UNet trained on randomly transformed images
    wt       weight tying: every conv kernel constrained to the group (exactly equivariant)
    fa       frame averaging: the group average of the plain UNet, trained and sampled as such
    reg      the plain UNet trained with the equivariance regulariser against its EMA; sampled with FA
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from attndiff import UserError, config
from attndiff.diffusion import job as core
from attndiff.diffusion.edm import EDMConfig, edm_loss
from attndiff.diffusion.unet import UNet, UNetConfig
from attndiff.symmetry import groups
from attndiff.symmetry.averaging import augmented_loss, frame_average, regularised_loss
from attndiff.symmetry.layers import tie_weights

METHODS = ("none", "augment", "wt", "fa", "reg")
EQUIVARIANT = ("wt", "fa", "reg")  # the samplers of these methods are exactly equivariant


@dataclasses.dataclass
class SymmetryConfig:
    group: str = "trivial"  # trivial, C4, D4, H, V
    method: Literal["none", "augment", "wt", "fa", "reg"] = "none"
    reg_weight: float = 1.0  # weight of the equivariance penalty (method = reg)

    def validate(self):
        groups.get(self.group)
        if self.reg_weight < 0:
            raise UserError(f"symmetry.reg_weight must be >= 0, got {self.reg_weight}")


def build_net(unet: UNetConfig, shape, sym: SymmetryConfig) -> UNet:
    """The UNet of a method: weight-tied for wt, plain otherwise."""
    net = core.build_net(unet, shape)
    return tie_weights(net, groups.get(sym.group)) if sym.method == "wt" else net


def sampling_denoiser(denoiser, sym: SymmetryConfig):
    """The denoiser a method samples with: the frame average for fa and reg, the network's own otherwise."""
    return frame_average(denoiser, groups.get(sym.group)) if sym.method in ("fa", "reg") else denoiser


def training_loss(sym: SymmetryConfig, edm: EDMConfig, target=None):
    """The training loss of a method as train()'s loss_fn(denoiser, x, labels, generator).

    `target` is the EMA denoiser that method reg regularises against.
    """
    group = groups.get(sym.group)
    if sym.method == "augment":
        return lambda d, x, y, g: augmented_loss(d, group, x, y, cfg=edm, generator=g)
    if sym.method == "fa":
        return lambda d, x, y, g: edm_loss(frame_average(d, group), x, y, cfg=edm, generator=g)
    if sym.method == "reg":
        if target is None:
            raise ValueError("method reg needs the target (EMA) denoiser")
        return lambda d, x, y, g: regularised_loss(d, target, group, x, y, cfg=edm, weight=sym.reg_weight,
                                                   generator=g)
    return lambda d, x, y, g: edm_loss(d, x, y, cfg=edm, generator=g)


def symmetry_of(meta: dict) -> SymmetryConfig:
    """The symmetry settings a checkpoint was trained with (none for plain models)."""
    return config.from_dict(SymmetryConfig, meta["config"].get("symmetry", {}), "symmetry")


def load_model(path: str | Path, *, device: str = "cpu", precision: str = "auto") -> core.LoadedModel:
    """Any attndiff checkpoint as the denoiser it samples with: structure-preserving ones with
    their tied weights or frame averaging, plain ones as they are."""
    loaded = core.load_denoiser(path, device=device, precision=precision,
                                build=lambda unet, shape, meta: build_net(unet, shape, symmetry_of(meta)))
    return dataclasses.replace(loaded, denoiser=sampling_denoiser(loaded.denoiser, symmetry_of(loaded.meta)))
