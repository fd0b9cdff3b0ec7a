"""CAB-CNN and its baselines: one CNN front end on the log-mel spectrogram, three heads.

A documented RECONSTRUCTION: only the abstract of arXiv 2006.09815 is known and no authors'
code exists. The abstract fixes a CNN, a list of simple classifiers and an attention mechanism
that selects among them; this is the reading implemented here:

    h       = CNN(log-mel)                                     (feature vector, d dims)
    p_i     = softmax(C_i h),  i = 1..N                        N linear classifiers
    alpha   = softmax_i((W_s h) . key_i / sqrt(d_s))          the selector: one learned key per classifier
    p(y|x)  = sum_i alpha_i p_i                                trained with the mixture's log-likelihood

The mixture is taken over the classifiers' probabilities (a soft mixture of experts over light
heads), so each classifier stays a complete classifier and the selector chooses between them;
`selector_entropy` optionally adds alpha's entropy to the loss to sharpen (> 0) the choice.

Default: N = 4 linear classifiers and the key-query selector. Linear is the simplest classifier
the abstract's "simple classifiers" can mean, and with N = 4 the whole head (about 7k
parameters on a 128-d h with 10 classes) stays in the size range of one ordinary MLP head, so
the comparison with the baselines is about structure, not size. `classifier_dim = r` makes each
classifier low-rank (linear on its own r-dim projection: fewer parameters), `selector = "mlp"`
replaces the keys by a small network on h.
Baselines on the same front end: `linear` (one linear head) and `mlp` (a hidden layer sized so
that its head has at least as many parameters as CAB-CNN's classifiers and selector together).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from attndiff import UserError


@dataclasses.dataclass
class ModelConfig:
    channels: tuple[int, ...] = (16, 32, 64, 64)  # conv blocks: 3x3 conv, BatchNorm, ReLU, 2x2 max-pool
    dropout: float = 0.2
    classifiers: int = 4  # CAB-CNN: N simple classifiers
    classifier_dim: int = 0  # 0: each classifier is linear on h; r > 0: linear on its own r-dim projection of h
    selector: Literal["attention", "mlp"] = "attention"  # keys and a query (default) or a small network on h
    selector_dim: int = 16  # d_s of the selector's query and keys (or the selector MLP's width)
    selector_entropy: float = 0.0  # weight of alpha's mean entropy in the loss (> 0 sharpens the selection)
    mlp_hidden: int = 0  # 0 = the smallest width with at least CAB-CNN's head parameters

    def validate(self):
        if not self.channels or min(self.channels) < 1 or self.classifiers < 1 or self.selector_dim < 1 \
                or self.classifier_dim < 0:
            raise UserError("model: need non-empty positive channels, classifiers >= 1, selector_dim >= 1, "
                            "classifier_dim >= 0")
        if not 0 <= self.dropout < 1 or self.mlp_hidden < 0:
            raise UserError("model: need 0 <= dropout < 1 and mlp_hidden >= 0")


class FrontEnd(nn.Module):
    """(N, n_mels, frames) -> (N, d): conv blocks, then mean and max over time-frequency."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, cin = [], 1
        for c in cfg.channels:
            layers += [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            cin = c
        self.net = nn.Sequential(*layers)
        self.norm = nn.BatchNorm2d(1)  # per-dataset level of the log-mel input
        self.dropout = nn.Dropout(cfg.dropout)
        self.dim = 2 * cin

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        h = self.net(self.norm(spec.unsqueeze(1)))
        return self.dropout(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))


class LinearHead(nn.Module):
    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, classes)

    def forward(self, h):
        return F.log_softmax(self.fc(h), 1), None


class MLPHead(nn.Module):
    def __init__(self, dim: int, classes: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, h):
        return F.log_softmax(self.net(h), 1), None


class SelectorHead(nn.Module):
    """N simple classifiers mixed by a selector; returns (log p(y|x), alpha)."""

    def __init__(self, dim: int, classes: int, cfg: ModelConfig):
        super().__init__()
        n, r = cfg.classifiers, cfg.classifier_dim
        # all N classifiers in one matmul: linear on h, or each on its own r-dim projection of h
        self.classifiers = nn.Linear(dim, n * classes) if r == 0 else nn.Sequential(
            nn.Linear(dim, n * r, bias=False), nn.Unflatten(1, (n, r)), GroupedLinear(n, r, classes), nn.Flatten())
        if cfg.selector == "attention":
            self.query = nn.Linear(dim, cfg.selector_dim, bias=False)
            self.keys = nn.Parameter(torch.randn(n, cfg.selector_dim) / math.sqrt(cfg.selector_dim))
            self.scorer = None
        else:
            self.scorer = nn.Sequential(nn.Linear(dim, cfg.selector_dim), nn.ReLU(), nn.Linear(cfg.selector_dim, n))
        self.n, self.classes, self.scale = n, classes, 1 / math.sqrt(cfg.selector_dim)

    def selection(self, h: torch.Tensor) -> torch.Tensor:
        """alpha (B, N): which classifier to trust for this input; rows sum to 1."""
        scores = self.scorer(h) if self.scorer is not None else self.query(h) @ self.keys.T * self.scale
        return torch.softmax(scores, 1)

    def forward(self, h):
        log_p = F.log_softmax(self.classifiers(h).unflatten(1, (self.n, self.classes)), 2)  # (B, N, K)
        alpha = self.selection(h)
        return torch.logsumexp(log_p + alpha.clamp_min(1e-12).log().unsqueeze(2), 1), alpha


class GroupedLinear(nn.Module):
    """N independent linear maps r -> K applied to (B, N, r) at once."""

    def __init__(self, n: int, r: int, k: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, r, k) / math.sqrt(r))
        self.bias = nn.Parameter(torch.zeros(n, k))

    def forward(self, z):
        return torch.einsum("bnr,nrk->bnk", z, self.weight) + self.bias


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def mlp_width(dim: int, classes: int, target: int) -> int:
    """The smallest hidden width whose MLP head has at least `target` parameters."""
    return max(1, math.ceil((target - classes) / (dim + 1 + classes)))


def _mlp_head(d: int, classes: int, cfg: ModelConfig) -> nn.Module:
    """An MLP head with at least CAB-CNN's head parameters (unless cfg.mlp_hidden fixes its width)."""
    return MLPHead(d, classes, cfg.mlp_hidden or mlp_width(d, classes, count(SelectorHead(d, classes, cfg))))


MODELS = {  # model kind -> head(front-end dim, classes, config)
    "cabcnn": SelectorHead,
    "linear": lambda d, classes, cfg: LinearHead(d, classes),
    "mlp": _mlp_head,
}


class AudioClassifier(nn.Module):
    def __init__(self, cfg: ModelConfig, kind: str, classes: int):
        super().__init__()
        if kind not in MODELS:
            raise UserError(f"unknown model {kind!r} (known: {', '.join(MODELS)})")
        self.kind = kind
        self.front = FrontEnd(cfg)
        self.head = MODELS[kind](self.front.dim, classes, cfg)

    def forward(self, spec: torch.Tensor):
        """log-mel (N, n_mels, frames) -> (log-probabilities (N, K), selector weights (N, N_cls) or None)."""
        return self.head(self.front(spec))

    def parameter_counts(self) -> dict[str, int]:
        return {"head": count(self.head), "total": count(self)}
