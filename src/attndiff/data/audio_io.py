"""Reading audio files and assigning folds: the parts of the audio datasets that know nothing of
any particular dataset. Files are read with soundfile (no torchaudio: it does not install beside
this torch) and resampled with scipy's polyphase filter."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from attndiff import UserError


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Keep the centre n samples, or zero-pad at the end to n."""
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return wave[start:start + n]
    return np.pad(wave, (0, n - len(wave)))


def read_audio(path: Path, sample_rate: int, duration: float, *, resample: bool = True) -> np.ndarray:
    """One file -> float32 mono at sample_rate, duration seconds long."""
    import soundfile
    from scipy.signal import resample_poly

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, soundfile.LibsndfileError) as e:
        raise UserError(f"cannot read audio file {path}: {e}") from None
    if len(data) == 0:
        raise UserError(f"audio file {path} has no samples")
    wave = data.mean(1)
    if rate != sample_rate:
        if not resample:
            raise UserError(f"audio file {path} is at {rate} Hz, not {sample_rate} Hz (set audio.resample = true)")
        ratio = Fraction(sample_rate, rate).limit_denominator(1000)
        wave = resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)
    if not np.isfinite(wave).all():
        raise UserError(f"audio file {path} contains NaN or inf samples")
    return fit_length(wave, round(sample_rate * duration))


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold 1..k per item, each class spread evenly over the folds in a seeded order."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(labels), np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        folds[idx] = (np.arange(len(idx)) + offset) % k + 1
        offset += len(idx)  # keeps small classes from all starting at fold 1
    return folds
