"""CAB-CNN against its baselines on the same front end: spoken-digits, accents, sonic-pi.

For every dataset and model (cabcnn, linear, mlp): accuracy and macro F1 as mean ± std over
seeds (and folds where the dataset has them), head and total parameter counts, and the cost of
a training step, timed side by side (the models in turn, median over rounds) so that machine
noise does not bias one model. The claim under test (abstract of arXiv 2006.09815): higher and
steadier scores with fewer classifier parameters. Runs are resumable (finished seed/fold pairs
are kept); the wall time of each run is in the JSON, but runs are sequential, so only the
side-by-side step times compare models fairly.

    python benchmarks/audio.py                        # 3 datasets x 3 models x 5 seeds
    python benchmarks/audio.py --datasets spoken-digits --seeds 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import save_results  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.audio.models import (
    MODELS,  # noqa: E402
    AudioClassifier,  # noqa: E402
)
from attndiff.jobs.audio import AudioJobConfig, features_of, run_audio  # noqa: E402
from attndiff.jobs.audio_report import summarize  # noqa: E402

KINDS = tuple(MODELS)
from attndiff.run import Run  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["spoken-digits", "accents", "sonic-pi"])
    p.add_argument("--models", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args()
    rows = []
    for name in args.datasets:
        cfgs = {kind: config.load(AudioJobConfig, f"configs/audio/{name}.toml",
                                  [f'model_kind="{kind}"', f"seeds={args.seeds}",
                                   f'out="runs/bench-audio/{name}-{kind}"']) for kind in args.models}
        for kind, cfg in cfgs.items():
            results = [r for r in Run(run_audio(cfg)).metrics() if r.get("kind") == "result"]
            s = summarize(results)
            rows.append({"dataset": name, "model": kind, "runs": s["accuracy"]["n"],
                         **{m: s[m] for m in ("accuracy", "f1", "seconds")}, "head": s["head"], "total": s["total"]})
        for kind, ms in step_times(cfgs).items():
            next(r for r in rows if r["dataset"] == name and r["model"] == kind)["ms_per_step"] = ms
    save_results("audio", {"seeds": args.seeds, "rows": rows}, table(rows))


def step_times(cfgs: dict[str, AudioJobConfig], rounds: int = 7, steps: int = 10) -> dict[str, float]:
    """Median ms per training step (forward, backward, AdamW) on real batches, the models in turn."""
    data, feats = features_of(next(iter(cfgs.values())))
    times: dict[str, list[float]] = {kind: [] for kind in cfgs}
    models = {}
    for kind, cfg in cfgs.items():
        torch.manual_seed(0)
        model = AudioClassifier(cfg.model, kind, len(data.classes)).train()
        models[kind] = model, torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    batch = next(iter(cfgs.values())).train.batch_size
    x, y = feats[:batch], data.labels[:batch]
    for _ in range(rounds):
        for kind, (model, opt) in models.items():
            t = time.perf_counter()
            for _ in range(steps):
                loss = F.nll_loss(model(x)[0], y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            times[kind].append((time.perf_counter() - t) / steps * 1000)
    return {kind: statistics.median(v) for kind, v in times.items()}


def table(rows: list[dict]) -> str:
    lines = [("| dataset | model | runs | accuracy | macro F1 | head params | total params | ms / step | "
              "x linear |"), "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        linear = next((q["ms_per_step"] for q in rows if q["dataset"] == r["dataset"] and q["model"] == "linear"),
                      None)
        ratio = f"{r['ms_per_step'] / linear:.2f}" if linear else "-"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['runs']} | {r['accuracy']['mean']:.3f} ± "
                     f"{r['accuracy']['std']:.3f} | {r['f1']['mean']:.3f} ± {r['f1']['std']:.3f} | {r['head']:,} | "
                     f"{r['total']:,} | {r['ms_per_step']:.1f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
