"""CAB-CNN against its baselines on the same front end: spoken-digits, accents, sonic-pi.

For every dataset and model (cabcnn, linear, mlp): accuracy and macro F1 as mean ± std over
seeds (and folds where the dataset has them), head and total parameter counts, and training
time per run. The claim under test (abstract of arXiv 2006.09815): higher and steadier scores
with fewer classifier parameters. Runs are resumable (finished seed/fold pairs are kept).

    python benchmarks/audio.py                        # 3 datasets x 3 models x 5 seeds
    python benchmarks/audio.py --datasets spoken-digits --seeds 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import save_results  # noqa: E402

from attndiff import config  # noqa: E402
from attndiff.audio.train import KINDS, AudioJobConfig, run_audio, summarize  # noqa: E402
from attndiff.run import Run  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["spoken-digits", "accents", "sonic-pi"])
    p.add_argument("--models", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args()
    rows = []
    for name in args.datasets:
        for kind in args.models:
            cfg = config.load(AudioJobConfig, f"configs/audio/{name}.toml",
                              [f'model_kind="{kind}"', f"seeds={args.seeds}", f'out="runs/bench-audio/{name}-{kind}"'])
            results = [r for r in Run(run_audio(cfg)).metrics() if r.get("kind") == "result"]
            s = summarize(results)
            rows.append({"dataset": name, "model": kind, "runs": s["accuracy"]["n"],
                         **{m: s[m] for m in ("accuracy", "f1", "seconds")}, "head": s["head"], "total": s["total"]})
    save_results("audio", {"seeds": args.seeds, "rows": rows}, table(rows))


def table(rows: list[dict]) -> str:
    lines = ["| dataset | model | runs | accuracy | macro F1 | head params | total params | s / run |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['model']} | {r['runs']} | {r['accuracy']['mean']:.3f} ± "
                     f"{r['accuracy']['std']:.3f} | {r['f1']['mean']:.3f} ± {r['f1']['std']:.3f} | {r['head']:,} | "
                     f"{r['total']:,} | {r['seconds']['mean']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
