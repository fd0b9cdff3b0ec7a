"""`attndiff audio predict`: classify new recordings with a model trained by `audio run`.

Each file goes through the run's own front end: read as mono, resampled to the run's rate and
centre-cropped or zero-padded to its clip length (audio_io.read_audio, as in training), then the
same log-mel. Out come the class probabilities, the top class and, for CAB-CNN, the selector's
weights over its classifiers.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from attndiff import UserError, checkpoint, config
from attndiff.audio.features import log_mel
from attndiff.audio.models import AudioClassifier
from attndiff.audio.train import predict
from attndiff.data.audio_io import read_audio
from attndiff.fsutil import write_text
from attndiff.jobs.audio import AudioJobConfig


def find_model(run: str | Path, seed: int | None = None, fold: int | None = None) -> Path:
    """The checkpoint of one (seed, fold) pair of a run folder (the first one by default), or a file."""
    run = Path(run)
    if run.is_file():
        return run
    pairs = sorted((run / "checkpoints").glob("*-s*-f*.safetensors")) if run.is_dir() else []
    if not pairs:
        raise UserError(f"no trained audio model in {run} (expected the folder of an `attndiff audio run`)")
    wanted = [p for p in pairs
              if (seed is None or f"-s{seed}-" in p.name) and (fold is None or p.stem.endswith(f"-f{fold}"))]
    if not wanted:
        which = " and".join(f" {k} {v}" for k, v in (("seed", seed), ("fold", fold)) if v is not None)
        raise UserError(f"{run} has no model for{which}; it has: "
                        + ", ".join(p.stem for p in pairs))
    return wanted[0]


def predict_files(files: list[str], model_path: str | Path, out: str | None = None) -> list[dict]:
    """One row per file: its top class, every class probability and (CAB-CNN) the selector weights."""
    if not files:
        raise UserError("name at least one audio file")
    tensors, meta = checkpoint.load(model_path)
    cfg = config.from_dict(AudioJobConfig, meta["config"])
    classes = list(meta["classes"])
    model = AudioClassifier(cfg.model, cfg.model_kind, len(classes))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise UserError(f"{model_path} does not match its own config: {str(e).splitlines()[0]}") from None
    waves = torch.from_numpy(np.stack([read_audio(Path(f), cfg.audio.sample_rate, cfg.audio.duration,
                                                  resample=cfg.audio.resample) for f in files]))
    with torch.no_grad():
        log_p, alpha = predict(model, log_mel(waves, cfg.audio.sample_rate, cfg.features))
    p = log_p.exp()
    rows = []
    for i, f in enumerate(files):
        row = {"file": f, "class": classes[int(p[i].argmax())], "probability": float(p[i].max()),
               **{f"p_{c}": float(v) for c, v in zip(classes, p[i])}}
        if alpha is not None:
            row.update({f"selector_{j}": float(a) for j, a in enumerate(alpha[i])})
        rows.append(row)
    for row in rows:
        extra = " selector " + " ".join(f"{v:.2f}" for k, v in row.items() if k.startswith("selector_")) \
            if alpha is not None else ""
        print(f"{row['file']}\t{row['class']}\t{row['probability']:.3f}{extra}")
    if out:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text(Path(out), buffer.getvalue())
    return rows
