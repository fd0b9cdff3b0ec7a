"""The structure-preserving recipes, registered in the core's model registry on import.

Methods (all with the same UNet, loss, training loop and sampler of the shared core):
    none     the plain UNet (the core's own recipe)
    augment  the plain UNet trained on randomly transformed images
    wt       weight tying: every conv kernel constrained to the group (exactly equivariant)
    regular  group convolutions on regular feature fields (exactly equivariant, oriented kernels)
    fa       frame averaging: the group average of the plain UNet, trained and sampled as such
    reg      the plain UNet trained with the equivariance regulariser against its EMA; sampled with FA

The options of these recipes are a resolved `Symmetry` (the group object, not its name), made
once per command from the [symmetry] config section.
"""

from __future__ import annotations

import dataclasses
import functools

from attndiff import UserError
from attndiff.diffusion import model
from attndiff.symmetry import groups
from attndiff.symmetry.averaging import augmented_loss, averaged_loss, frame_average, regularised_loss
from attndiff.symmetry.layers import tie_weights
from attndiff.symmetry.regular import RegularLayers


@dataclasses.dataclass
class SymmetryConfig:
    group: str = "trivial"  # one of groups.NAMES: trivial, C4, D4, H, V
    method: str = "none"  # a name of the model registry: none, augment, wt, regular, fa, reg
    reg_weight: float = 1.0  # weight of the equivariance penalty (method = reg)

    def validate(self):
        groups.get(self.group)
        model.recipe(self.method)
        if self.reg_weight < 0:
            raise UserError(f"symmetry.reg_weight must be >= 0, got {self.reg_weight}")


@dataclasses.dataclass(frozen=True)
class Symmetry:
    group: groups.Group
    reg_weight: float = 1.0


def resolve(cfg: SymmetryConfig) -> Symmetry:
    return Symmetry(groups.get(cfg.group), cfg.reg_weight)


def _averaged(denoiser, options: Symmetry):
    return frame_average(denoiser, options.group)


def _regularised(edm, options: Symmetry, target):
    if target is None:
        raise ValueError("method reg needs the target (EMA) denoiser")
    return functools.partial(regularised_loss, target=target, group=options.group, cfg=edm, weight=options.reg_weight)


_plain = model.RECIPES["none"]  # the parts these recipes share with the plain one

model.register(model.Recipe(
    "augment", equivariant=False, build=_plain.build,
    loss=lambda edm, options, target: functools.partial(augmented_loss, group=options.group, cfg=edm),
    sampler=_plain.sampler, edm_loss=False))
model.register(model.Recipe(
    "wt", equivariant=True, build=lambda cfg, shape, options: tie_weights(model.network(cfg, shape), options.group),
    loss=_plain.loss, sampler=_plain.sampler))
model.register(model.Recipe(
    "regular", equivariant=True, loss=_plain.loss, sampler=_plain.sampler,
    build=lambda cfg, shape, options: model.network(cfg, shape, RegularLayers(options.group))))
model.register(model.Recipe(
    "fa", equivariant=True, build=_plain.build,
    loss=lambda edm, options, target: functools.partial(averaged_loss, group=options.group, cfg=edm),
    sampler=_averaged, edm_loss=False))
model.register(model.Recipe(
    "reg", equivariant=True, build=_plain.build, loss=_regularised, sampler=_averaged,
    edm_loss=False))
