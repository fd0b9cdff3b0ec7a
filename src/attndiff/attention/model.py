"""The simple attention classifier of arXiv 2011.10036.

    s_w = q . k_w                        one global query, a free key per word (keys start at 0)
    a_i = softmax_i(s_{w_i})             over the sentence's positions (PAD masked or not)
    c   = sum_i a_i v_{w_i}              per-word embeddings v
    logits = head(c)                     FC (fixed random matrix, unit diagonal), TC (linear), TL (MLP)

No 1/sqrt(d) scaling, no positional information. A whole batch is a few tensor operations.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from attndiff import UserError, config

HEADS = ("fc", "tc", "tl")  # fixed random matrix, trained linear, trained two-layer
ABLATIONS = {"kf": "freeze_keys", "ef": "freeze_embeddings", "qt": "train_query"}  # variant-name suffixes


@dataclasses.dataclass
class ModelConfig:
    embed_dim: int = 10
    key_dim: int = 10
    head: str = "fc"  # one of HEADS
    hidden: int = 10  # TL's hidden width
    embed_std: float = 1e-6  # initial embedding std (the paper's main runs; 0.1 in its ablations)
    query_std: float = 0.3
    freeze_keys: bool = False
    freeze_embeddings: bool = False
    train_query: bool = False
    seed: int = 0

    def validate(self):
        config.check_choice("model.head", self.head, HEADS)
        if self.embed_dim < 1 or self.key_dim < 1 or self.hidden < 1:
            raise UserError("model: embed_dim, key_dim and hidden must be >= 1")
        if self.embed_std < 0 or self.query_std < 0:
            raise UserError("model: embed_std and query_std must be >= 0")

    @property
    def variant(self) -> str:
        """The paper's run name, e.g. Attn-FC-KF."""
        parts = [f"Attn-{self.head.upper()}"]
        parts += ["KF"] if self.freeze_keys else []
        parts += ["EF"] if self.freeze_embeddings else []
        parts += ["QT"] if self.train_query else []
        return "-".join(parts)


def variant_model(base: ModelConfig, variant: str) -> ModelConfig:
    """The model settings of a variant name such as "tc-kf"."""
    head, *flags = variant.lower().split("-")
    if head not in HEADS or any(f not in ABLATIONS for f in flags):
        raise UserError(f"bad variant {variant!r}: a head ({', '.join(HEADS)}), then optional "
                        + ", ".join(f"-{a}" for a in ABLATIONS))
    return dataclasses.replace(base, head=head, **{ABLATIONS[f]: True for f in flags})


class AttentionClassifier(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab: int, classes: int):
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        self.embedding = nn.Parameter(torch.randn(vocab, cfg.embed_dim, generator=gen) * cfg.embed_std,
                                      requires_grad=not cfg.freeze_embeddings)
        self.keys = nn.Parameter(torch.zeros(vocab, cfg.key_dim), requires_grad=not cfg.freeze_keys)
        self.query = nn.Parameter(torch.randn(cfg.key_dim, generator=gen) * cfg.query_std,
                                  requires_grad=cfg.train_query)
        if cfg.head == "fc":
            fixed = torch.randn(cfg.embed_dim, classes, generator=gen)
            n = min(cfg.embed_dim, classes)
            fixed[torch.arange(n), torch.arange(n)] = 1.0
            self.register_buffer("fixed_head", fixed)  # never trained, saved with the model
            self.head = None
        elif cfg.head == "tc":
            self.head = nn.Linear(cfg.embed_dim, classes, bias=False)
        elif cfg.head == "tl":
            self.head = nn.Sequential(nn.Linear(cfg.embed_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, classes))
        else:
            raise UserError(f"unknown head {cfg.head!r} (known: fc, tc, tl)")
        if self.head is not None:
            torch.manual_seed(cfg.seed)
            for layer in self.head.modules():
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()

    def scores(self) -> torch.Tensor:
        """s_w = q . k_w for every word (V,)."""
        return self.keys @ self.query

    def attention(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(N, L) attention weights; positions where mask is False get weight 0."""
        s = self.scores()[tokens]
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        return torch.softmax(s, dim=1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        a = self.attention(tokens, mask)
        context = (a.unsqueeze(-1) * self.embedding[tokens]).sum(1)  # faster on CPU than a batched matmul
        return context @ self.fixed_head if self.head is None else self.head(context)


def loss_and_accuracy(model: AttentionClassifier, tokens, labels, mask=None) -> tuple[torch.Tensor, float]:
    logits = model(tokens, mask)
    return F.cross_entropy(logits, labels), (logits.argmax(1) == labels).float().mean().item()
