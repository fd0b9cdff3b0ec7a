"""What an SFBD run measures after each round, and its report sections."""

from __future__ import annotations

import numpy as np
import torch

from attndiff import distributed, progress, seeding
from attndiff.diffusion.model import ModelSpec
from attndiff.jobs.exact import distribution_metrics, is_exact, scatter
from attndiff.jobs.train import evaluate
from attndiff.metrics import fid as fid_metric
from attndiff.metrics.distortion import psnr
from attndiff.report import figures
from attndiff.report.figures import save_grid
from attndiff.report.html import fig_tag, table
from attndiff.run import Run
from attndiff.sfbd.noisy import NoisySplit

SAMPLES = "sfbd"  # the tag of the sample evaluations ...
EVAL = f"{SAMPLES}-eval"  # ... and of their records (one per round)


class Evaluator:
    """Everything measured after a round; needs the held-back originals, which training never sees.

    sample, fid: the job's [sample] and [fid] sections; `dataset` names the FID reference;
    `denoised_fid_n` and `seed` fix the subset of the denoised set that is scored;
    `batch_size` turns steps into images seen.
    """

    def __init__(self, spec: ModelSpec, split: NoisySplit, run: Run, *, sample, fid, dataset: str,
                 denoised_fid_n: int, seed: int, batch_size: int):
        self.spec, self.split, self.run = spec, split, run
        self.sample, self.fid, self.dataset, self.batch_size = sample, fid, dataset, batch_size
        self.denoised_fid_n = denoised_fid_n
        n = min(denoised_fid_n, len(split.noisy))
        perm = torch.randperm(len(split.noisy), generator=seeding.generator(seed, "denoised-fid-subset"))
        self.subset = perm[:n].sort().values if n >= 2 else perm[:8].sort().values
        self._original_features = None

    def original_features(self) -> np.ndarray:
        if self._original_features is None:
            self._original_features = fid_metric.features(self.split.originals.images[self.subset],
                                                          precision=self.fid.precision, progress="original features")
        return self._original_features

    def denoised_metrics(self, denoised: torch.Tensor) -> dict:
        if self.split.originals is None:
            return self.unpaired_metrics(denoised)
        out = {"denoised_psnr": psnr(denoised, self.split.originals.images).mean().item()}
        if is_exact(self.dataset):  # the denoised set against the truth
            return {**out, **{f"denoised_{k}": v for k, v in distribution_metrics(denoised, self.dataset).items()
                              if k in ("energy", "sliced_w2", "loglik")}}
        if self.denoised_fid_n >= 2:
            feats = fid_metric.features(denoised[self.subset].clamp(-1, 1), precision=self.fid.precision,
                                        progress="denoised features")
            out["denoised_fid"] = fid_metric.fid_from_features(feats, self.original_features())
            out["denoised_fid_n"] = len(self.subset)
        return out

    def unpaired_metrics(self, denoised: torch.Tensor) -> dict:
        """Without originals (your own noisy set): the denoised set's mean and std against the
        clean set's, and its FID against the FID reference."""
        clean = self.split.clean.images
        out = {"denoised_mean_gap": (denoised.mean() - clean.mean()).item(),
               "denoised_std_ratio": (denoised.std() / clean.std()).item()}
        if self.denoised_fid_n >= 2 and self.fid.n:
            out["denoised_ref_fid"] = fid_metric.fid(denoised[self.subset].clamp(-1, 1), self.dataset, self.fid.split,
                                                     len(self.subset), with_kid=False, precision=self.fid.precision,
                                                     progress=False)["fid"]
        return out

    def __call__(self, k: int, ema, denoised: torch.Tensor, step: int) -> dict:
        """The round-k record, measured by rank 0 and handed to every rank (the stopping rule needs it)."""
        return distributed.on_main(self._evaluate, k, ema, denoised, step)

    def _evaluate(self, k: int, ema, denoised: torch.Tensor, step: int) -> dict:
        record = self.run.last(EVAL, round=k)
        if record is not None:  # a killed run finished this evaluation
            return record
        if is_exact(self.dataset):
            scatter(denoised, self.dataset, self.run.samples / f"denoised-round{k}.png", f"denoised set, round {k}")
        else:
            idx = self.subset[:8]
            rows = [] if self.split.originals is None else [self.split.originals.images[idx]]
            rows += [self.split.noisy[idx].clamp(-1, 1), denoised[idx].clamp(-1, 1)]
            save_grid(torch.cat(rows), self.run.samples / f"triplets-round{k}.png", nrow=len(idx))
        extra = {"round": k, "images_seen": step * self.batch_size, **self.denoised_metrics(denoised)}
        record = evaluate(self.spec.sampling_denoiser(ema), self.spec, self.run, self.sample, self.fid,
                          fid_dataset=self.dataset, tag=SAMPLES, step=k, extra=extra)
        progress.say(_summary(k, record, self.dataset))
        return record


def _summary(k: int, r: dict, dataset: str) -> str:
    """One line on round k's denoised set, with whatever could be measured."""
    parts = [f"PSNR {r['denoised_psnr']:.2f} dB" if "denoised_psnr" in r else None,
             f"mean {r['denoised_mean_gap']:+.3f} and std x{r['denoised_std_ratio']:.3f} against the clean set's"
             if "denoised_mean_gap" in r else None,
             f"energy distance to the truth {r['denoised_energy']:.4f}" if "denoised_energy" in r else None,
             f"FID {r['denoised_fid']:.2f} against its originals" if "denoised_fid" in r else None,
             f"FID {r['denoised_ref_fid']:.2f} against {dataset}" if "denoised_ref_fid" in r else None]
    return f"round {k}: denoised set " + ", ".join(p for p in parts if p)


def round_table(records: list[dict]) -> str:
    columns = [("round", "round", "d"), ("fid", "FID", ".2f"), ("fid_n", "N", "d"),
               ("denoised_psnr", "E_k PSNR (dB)", ".2f"), ("denoised_fid", "E_k FID", ".2f")]
    if not any("denoised_psnr" in r for r in records):  # your own noisy set: nothing to compare E_k with
        columns = [*columns[:3], ("denoised_mean_gap", "E_k mean - clean mean", "+.3f"),
                   ("denoised_std_ratio", "E_k std / clean std", ".3f"),
                   ("denoised_ref_fid", "E_k FID against the reference", ".2f")]
    if any("energy" in r for r in records):  # the exact testbed: distances to the truth
        columns = [("round", "round", "d"), ("energy", "energy distance", ".4f"), ("sliced_w2", "sliced W2", ".4f"),
                   ("loglik", "log-likelihood", ".3f"), ("mode_tv", "mode TV", ".3f"),
                   ("denoised_energy", "E_k energy distance", ".4f")]
    return table(records, [*columns, ("images_seen", "images seen", ",d")])


def sfbd_sections(run: Run) -> list[str]:
    """Report sections of an SFBD run: metrics per round and the round curves."""
    rounds = run.find(EVAL)
    if not rounds:
        return []
    parts = ["<h2>SFBD rounds</h2>", round_table(rounds)]
    if not any("denoised_psnr" in r for r in rounds):
        parts.append("<p>Trained on a noisy set without originals (sfbd.noisy_data), so the denoised sets' PSNR and "
                     "their FID against the originals cannot be measured. Shown instead: each set's mean and std "
                     "against the clean set's, and its FID against the FID reference (fid.ref).</p>")
    for key, title in (("fid", "FID of model samples (round 0 = pretrained on clean only)"),
                       ("denoised_psnr", "PSNR of the denoised set E_k (dB; round 0 = the noisy set)"),
                       ("denoised_fid", "FID of E_k against its clean originals"),
                       ("energy", "energy distance of model samples to the truth (exact testbed)"),
                       ("denoised_energy", "energy distance of E_k to the truth (exact testbed)")):
        fig = figures.curves(rounds, key, x="round", by="tag", title=title)
        if fig is not None:
            parts.append(fig_tag(fig, title))
    return parts
