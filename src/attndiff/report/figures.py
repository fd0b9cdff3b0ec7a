"""Image grids (Pillow) and the run's curves (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from attndiff.data.images import to_uint8  # noqa: E402
from attndiff.fsutil import atomic_path  # noqa: E402


def grid_image(x: torch.Tensor, nrow: int | None = None, pad: int = 2, scale: int = 1) -> Image.Image:
    """[-1, 1] NCHW images -> one PIL image, nrow per row, on a white background."""
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    u8 = to_uint8(x)  # (N, C, H, W)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top:top + h, left:left + w] = u8[i].transpose(1, 2, 0)
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def save_grid(x: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 2, pad: int = 2) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        grid_image(x, nrow, pad=pad, scale=scale).save(tmp, format="PNG")
    return path


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """A matplotlib figure as a PNG file, written atomically; the figure is closed."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


def curves(records: list[dict], key: str, *, by: str = "tag", x: str = "step", title: str = "",
           logy: bool = False):
    """One line per value of `by` (e.g. training phase) of records[key] against records[x]."""
    series: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if r.get(key) is not None and r.get(x) is not None:
            series.setdefault(str(r.get(by, "")), []).append((r[x], r[key]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, points in series.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=name or key)
    if all(float(px).is_integer() for pts in series.values() for px, _ in pts):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel(x)
    ax.set_ylabel(key)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title or key)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return fig


def bars(values: dict[str, float], *, title: str = "", reference: float | None = None):
    """A bar per key; `reference` draws a dashed line (e.g. the equal share 1/|G|)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.bar(list(values), list(values.values()), color="#4477aa")
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return fig
