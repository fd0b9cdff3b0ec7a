"""`attndiff spd denoise`: equivariant image noise reduction with a trained model.

The image is taken as a draw of x_t at t = sigma (its noise level) and run through the model's
reverse process down to 0: the core's `denoise`, the same operation as SFBD's backward step.
With an equivariant denoiser and the injected noise transformed alike, denoise(g y) = g denoise(y),
so the result does not depend on the unknown orientation of the image; with --ode it is exactly
equivariant with no condition on the noise. A model that is not equivariant under the requested
group (a plain one, or one built for another group) is frame-averaged over it first.
"""

from __future__ import annotations

from pathlib import Path

import torch

from attndiff import UserError
from attndiff.data.images import read_images, to_unit_range
from attndiff.diffusion.job import LoadedModel
from attndiff.diffusion.sampling import denoise
from attndiff.fsutil import write_text
from attndiff.report.figures import save_grid
from attndiff.symmetry import groups
from attndiff.symmetry.averaging import frame_average
from attndiff.symmetry.models import EQUIVARIANT, load_model, symmetry_of


def equivariant_denoiser(model: LoadedModel, group_name: str | None):
    """The model's denoiser, frame-averaged over `group_name` unless it is already equivariant under it."""
    own = symmetry_of(model.meta)
    if group_name is None:
        return model.denoiser, own.group if own.method in EQUIVARIANT else "trivial"
    group = groups.get(group_name)
    if own.method in EQUIVARIANT and groups.get(own.group).name == group.name:
        return model.denoiser, group.name
    return frame_average(model.denoiser, group), group.name


def fit_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    return x.mean(1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)


def run_denoise(paths: list[str], model_path: str, *, sigma: float, out: str, group: str | None = None,
                ode: bool = False, add_noise: bool = False, steps: int = 40, seed: int = 0,
                device: str = "cpu", precision: str = "auto") -> Path:
    """Denoise image files; writes <stem>-denoised.png for each and comparison.png (input | output rows)."""
    if sigma <= 0 or steps < 1:
        raise UserError("--sigma must be > 0 and --steps >= 1")
    model = load_model(model_path, device=device, precision=precision)
    c, h, w = model.image_shape
    files = [Path(p) for p in paths]
    x = fit_channels(to_unit_range(read_images(files)), c)
    if tuple(x.shape[-2:]) != (h, w):
        raise UserError(f"the images are {x.shape[-1]}x{x.shape[-2]}, the model works on {w}x{h}")
    seeds = range(seed, seed + len(x))
    if add_noise:  # SDEdit-style: noise a clean image to level sigma first
        x = x + sigma * torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(s + 10**9))
                                     for s in seeds])
    denoiser, group_name = equivariant_denoiser(model, group)
    result = denoise(denoiser, x, sigma, steps=steps, stochastic=not ode, seeds=seeds, edm=model.edm,
                     device=device, progress="denoising")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for f, img in zip(files, result):
        save_grid(img[None], folder / f"{f.stem}-denoised.png", nrow=1, scale=1, pad=0)
    save_grid(torch.cat([x.clamp(-1, 1), result]), folder / "comparison.png", nrow=len(x))
    write_text(folder / "denoise.txt", f"model {model_path}\ngroup {group_name}\nsigma {sigma}\n"
               f"solver {'ode (heun)' if ode else 'sde'}\nsteps {steps}\nseed {seed}\nadded noise {add_noise}\n")
    print(f"denoised {len(x)} image(s) with group {group_name} -> {folder}")
    return folder

