"""Training and scoring one audio classifier: AdamW over minibatches of log-mel spectrograms with
optional SpecAugment masks, then accuracy and macro precision / recall / F1."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from attndiff import UserError
from attndiff.audio.models import AudioClassifier, ModelConfig
from attndiff.progress import bar
from attndiff.run import Run


@dataclasses.dataclass
class AudioTrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    spec_augment: bool = False  # random frequency and time masks on training spectrograms
    freq_mask: int = 8  # widest frequency mask (mel bins)
    time_mask: int = 16  # widest time mask (frames)

    def validate(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise UserError("train: need epochs >= 1, batch_size >= 1, lr > 0, weight_decay >= 0")


def spec_augment(x: torch.Tensor, cfg: AudioTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """One random frequency band and one random time span set to the clip's mean, per clip."""
    n, f, t = x.shape
    out = x.clone()
    fill = x.mean((1, 2))
    for i in range(n):
        wf, wt = (int(torch.randint(w + 1, (1,), generator=gen)) for w in (cfg.freq_mask, cfg.time_mask))
        f0 = int(torch.randint(max(1, f - wf), (1,), generator=gen))
        t0 = int(torch.randint(max(1, t - wt), (1,), generator=gen))
        out[i, f0:f0 + wf] = fill[i]
        out[i, :, t0:t0 + wt] = fill[i]
    return out


def macro_scores(y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, float]:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f1, _ = precision_recall_fscore_support(y, pred, labels=list(range(k)), average="macro", zero_division=0)
    return {"accuracy": float((y == pred).mean()), "precision": float(p), "recall": float(r), "f1": float(f1)}


@torch.no_grad()
def predict(model: AudioClassifier, x: torch.Tensor, batch: int = 256):
    model.eval()
    outs = [model(x[i:i + batch]) for i in range(0, len(x), batch)]
    log_p = torch.cat([o[0] for o in outs])
    alpha = torch.cat([o[1] for o in outs]) if outs[0][1] is not None else None
    return log_p, alpha


def train_one(kind: str, model_cfg: ModelConfig, t: AudioTrainConfig, x: torch.Tensor, y: torch.Tensor,
              x_test: torch.Tensor, y_test: torch.Tensor, n_classes: int, seed: int, run: Run,
              tag: str) -> AudioClassifier:
    """Train one classifier with AdamW; logs the loss and test accuracy of every epoch under `tag`."""
    torch.manual_seed(seed)
    model = AudioClassifier(model_cfg, kind, n_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    for epoch in bar(range(1, t.epochs + 1), desc=tag, unit="epoch"):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), t.batch_size):
            idx = perm[start:start + t.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = spec_augment(x[idx], t, gen) if t.spec_augment else x[idx]
            log_p, alpha = model(xb)
            loss = F.nll_loss(log_p, y[idx])
            if alpha is not None and model_cfg.selector_entropy:
                loss = loss + model_cfg.selector_entropy * -(alpha * alpha.clamp_min(1e-12).log()).sum(1).mean()
            if not torch.isfinite(loss):
                raise UserError(f"the loss became {loss.item()} in epoch {epoch} ({tag}); lower train.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        test_acc = (predict(model, x_test)[0].argmax(1) == y_test).float().mean().item()
        run.log({"tag": tag, "step": epoch, "loss": total / len(x), "test_acc": test_acc})
    return model
