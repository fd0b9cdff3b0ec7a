"""When to stop SFBD's rounds: a metric that has not improved for `patience` rounds."""

from __future__ import annotations

STOP_METRICS = {"fid": -1, "denoised_fid": -1, "denoised_psnr": +1}  # sign: +1 higher is better


def should_stop(metric: str, patience: int, records: list[dict]) -> bool:
    """True when the best of the last `patience` rounds' `metric` is no better than the best before."""
    if metric == "none" or len(records) <= patience:
        return False
    sign = STOP_METRICS[metric]
    values = [sign * r[metric] for r in records if r.get(metric) is not None]
    if len(values) <= patience:
        return False
    return max(values[-patience:]) <= max(values[:-patience])
