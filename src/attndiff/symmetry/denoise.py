"""Equivariant image noise reduction: which denoiser to run for a requested group.

An image is taken as a draw of x_t at t = sigma (its noise level) and run through the model's
reverse process down to 0: the core's `denoise`, the same operation as SFBD's backward step.
With an equivariant denoiser and the injected noise transformed alike, denoise(g y) = g denoise(y),
so the result does not depend on the unknown orientation of the image; deterministically (the
ODE) it is exactly equivariant with no condition on the noise. A model that is not equivariant
under the requested group (a plain one, or one built for another group) is frame-averaged first.
"""

from __future__ import annotations

from attndiff.symmetry import groups
from attndiff.symmetry.averaging import frame_average


def equivariant_denoiser(denoiser, *, equivariant_under: groups.Group | None, group_name: str | None):
    """(denoiser, name of the group it is equivariant under).

    `denoiser` is a model's sampling denoiser, exactly equivariant under `equivariant_under` (None:
    under no group). With `group_name` None the model's own symmetry is kept; otherwise the result
    is equivariant under that group, frame-averaged unless the model already is.
    """
    if group_name is None:
        return denoiser, equivariant_under.name if equivariant_under is not None else "trivial"
    group = groups.get(group_name)
    if equivariant_under is not None and equivariant_under.name == group.name:
        return denoiser, group.name
    return frame_average(denoiser, group), group.name
