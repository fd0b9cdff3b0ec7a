"""Training dynamics: full-batch gradient descent with snapshots, and the SEN relation.

The SEN (score-embedding norm) relation. Under gradient flow with the query frozen, keys
starting at zero and the other words of a sentence staying near zero, a word t that appears
with m other words obeys

    ||q||^2 (||v_t(T)||^2 - ||v_t(0)||^2) = 2 (s_t(T) - s_t(0)) + (2/m) (exp s_t(T) - exp s_t(0))

whatever the classifier: d s_t = -||q||^2 dL/ds_t and d||v_t||^2 = -2 v_t . dL/dv_t share the
factor sum over sentences of a_t v_t . dL/dc, and (1 - a_t) = m / (exp s_t + m) is what is
left. Score and norm therefore grow together ("mutual promotion"). Gradient descent with step
lr follows the flow up to O(lr), which `sen_deviation` measures.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings

import numpy as np
import torch

from attndiff import UserError
from attndiff.attention.model import AttentionClassifier, loss_and_accuracy
from attndiff.attention.task import PAD, UNK, Corpus
from attndiff.progress import bar as progress_bar


def sen_theory(s, m, *, q_norm: float, s0: float = 0.0, v0_norm=0.0):
    """||q|| ||v_t|| predicted from the score s (numpy or float), for a word among m others."""
    s = np.asarray(s, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    inside = (q_norm * np.asarray(v0_norm)) ** 2 + 2 * (s - s0) + (2 / m) * (np.exp(s) - np.exp(s0))
    return np.sqrt(np.clip(inside, 0, None))


def sen_deviation(scores: np.ndarray, norms: np.ndarray, m, q_norm: float) -> np.ndarray:
    """Per word: max over snapshots of |measured - theory| in ||q|| ||v||, relative to the final
    measured value (scores, norms: (snapshots, words); m: per word or one number)."""
    measured = q_norm * norms
    theory = sen_theory(scores, m, q_norm=q_norm, s0=scores[0], v0_norm=norms[0])
    return np.abs(measured - theory).max(0) / np.maximum(measured[-1], 1e-12)


class Sentences:
    """A split's sentences as fixed sparse word counts, C (N, V) and its transpose (CSR).

    The softmax over a sentence factorises over words: a_{n,i} = u_{w_i} / Z_n with u_w = exp(s_w)
    and Z = C u, so the context is c = C (u v) / Z. The token positions never change in training,
    so every gather and scatter of an epoch, forward and backward, is one product with C or C^T.
    Positions the mask leaves out (PAD) are not counted.
    """

    def __init__(self, tokens: torch.Tensor, vocab: int, mask: torch.Tensor | None = None):
        n, length = tokens.shape
        rows = torch.arange(n).repeat_interleave(length)
        keep = mask.flatten() if mask is not None else torch.ones(n * length, dtype=torch.bool)
        index = torch.stack([rows[keep], tokens.flatten()[keep]])
        self.counts = torch.sparse_coo_tensor(index, torch.ones(index.shape[1]), (n, vocab),
                                              check_invariants=True).coalesce()
        self._csr = {}

    def products(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, C^T) as CSR matrices of `dtype`, made once."""
        if dtype not in self._csr:
            counts = self.counts.to(dtype)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
                self._csr[dtype] = counts.to_sparse_csr(), counts.t().coalesce().to_sparse_csr()
        return self._csr[dtype]


def epoch_gradients(model: AttentionClassifier, sentences: Sentences, labels: torch.Tensor) -> tuple[float, float]:
    """Full-batch loss and accuracy; sets the .grad of every trainable parameter: in closed form
    through the attention (see `Sentences`) and by autograd through the head. The sums run in the
    model's dtype, in float64 when the scores spread so far that exp(s - max s) would leave float32's range."""
    model.zero_grad(set_to_none=True)
    q, keys, v = model.query.detach(), model.keys.detach(), model.embedding.detach()
    s = keys @ q
    dtype = torch.float64 if s.max() - s.min() > 60 else v.dtype
    matrix, transposed = sentences.products(dtype)
    s, q, keys, v = s.to(dtype), q.to(dtype), keys.to(dtype), v.to(dtype)
    u = torch.exp(s - s.max())  # the shift cancels in a_{n,i}
    out = matrix @ torch.cat([u[:, None] * v, u[:, None]], 1)  # (N, d + 1): C (u v), Z
    z = out[:, -1:]
    context = (out[:, :-1] / z).to(model.embedding.dtype).requires_grad_()
    logits = context @ model.fixed_head if model.head is None else model.head(context)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    dc = context.grad.to(dtype)
    dz = -(context.detach().to(dtype) * dc).sum(1, keepdim=True) / z  # through Z_n
    back = transposed @ torch.cat([dc / z, dz], 1)  # (V, d + 1)
    grad_s = u * ((v * back[:, :-1]).sum(1) + back[:, -1])
    grads = {model.embedding: u[:, None] * back[:, :-1], model.keys: grad_s[:, None] * q[None, :],
             model.query: keys.T @ grad_s}
    for p, grad in grads.items():
        if p.requires_grad:
            p.grad = grad.to(p.dtype)
    return loss.item(), (logits.argmax(1) == labels).float().mean().item()


@dataclasses.dataclass
class AttnTrainConfig:
    epochs: int = 5000
    lr: float = 0.1  # plain SGD on the full batch: gradient descent
    head_lr: float = 0.0  # learning rate of a trainable head (TC, TL); 0 = lr
    snapshot_every: int = 10

    def validate(self):
        if self.epochs < 1 or self.snapshot_every < 1 or self.lr <= 0 or self.head_lr < 0:
            raise UserError("train: need epochs >= 1, snapshot_every >= 1, lr > 0 and head_lr >= 0")


@dataclasses.dataclass
class History:
    epochs: np.ndarray  # (S,)
    loss: np.ndarray  # (S,) training loss
    train_acc: np.ndarray
    test_acc: np.ndarray
    scores: np.ndarray  # (S, V) q . k_w of every word
    norms: np.ndarray  # (S, V) ||v_w||
    attention: np.ndarray  # (S,) mean attention on the topic word (synthetic) or on the top word (text)
    q_norm: np.ndarray  # (S,)

    def arrays(self) -> dict[str, np.ndarray]:
        return dataclasses.asdict(self)


def train_attention(model: AttentionClassifier, corpus: Corpus, cfg: AttnTrainConfig, *, padding: str = "mask",
                    progress: bool | str = True) -> History:
    """Full-batch gradient descent on the training split with a snapshot every cfg.snapshot_every epochs."""
    tokens, labels = corpus.part("train")
    test_tokens, test_labels = corpus.part("test")
    mask = tokens != PAD if padding == "mask" else None
    test_mask = test_tokens != PAD if padding == "mask" else None
    is_topic = torch.isin(tokens, corpus.topic_ids) if len(corpus.topic_ids) else None
    head = {id(p) for p in model.head.parameters()} if model.head is not None else set()
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in head], "lr": cfg.lr},
              {"params": [p for p in model.parameters() if p.requires_grad and id(p) in head],
               "lr": cfg.head_lr or cfg.lr}]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.SGD(groups) if groups else None
    snaps: dict[str, list] = {k: [] for k in ("epochs", "loss", "train_acc", "test_acc", "scores", "norms",
                                              "attention", "q_norm")}

    def snapshot(epoch: int, loss: float, acc: float):
        with torch.no_grad():
            _, test_acc = loss_and_accuracy(model, test_tokens, test_labels, test_mask)
            a = model.attention(tokens, mask)
            focus = (a * is_topic).sum(1).mean() if is_topic is not None else a.max(1).values.mean()
            for key, value in (("epochs", epoch), ("loss", loss), ("train_acc", acc), ("test_acc", test_acc),
                               ("scores", model.scores().numpy().astype(np.float32)),
                               ("norms", model.embedding.norm(dim=1).numpy().astype(np.float32)),
                               ("attention", focus.item()), ("q_norm", model.query.norm().item())):
                snaps[key].append(value)

    desc = progress if isinstance(progress, str) else "gradient descent"
    bar = progress_bar(range(cfg.epochs + 1), desc=desc, unit="epoch", disable=not progress, miniters=100)
    sentences = Sentences(tokens, model.embedding.shape[0], mask)
    for epoch in bar:
        loss, acc = epoch_gradients(model, sentences, labels)
        if not math.isfinite(loss):
            raise UserError(f"the loss became {loss} at epoch {epoch}; lower train.lr")
        if epoch % cfg.snapshot_every == 0 or epoch == cfg.epochs:
            snapshot(epoch, loss, acc)
        if epoch < cfg.epochs and opt is not None:
            opt.step()
    if opt is None:  # nothing trainable: one snapshot is the whole story
        snapshot(cfg.epochs, loss, acc)
    return History(**{k: np.asarray(v) for k, v in snaps.items()})


def reduced_attention(model: AttentionClassifier, corpus: Corpus,
                      cfg: AttnTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The theory's reduced model of the synthetic task, trained as `train_attention` trains the full one.

    The SEN relation assumes every non-topic word stays at zero (score and embedding). Made exact,
    a sentence is its topic word t and m words that only dilute it: a_t = e^{s_t} / (e^{s_t} + m),
    c = a_t v_t, and the full batch is the topic words weighted by their share of the training
    sentences. The same gradient descent (lr, head_lr, what is frozen) from a float64 copy of
    `model`'s parameters gives the attention on the topic word that the theory predicts, with no
    drift of the other words. Returns (snapshot epochs, mean attention on the topic word), sampled
    as `train_attention` samples them.
    """
    if not len(corpus.topic_ids):
        raise UserError("the reduced model needs a task with topic words (the synthetic task)")
    tokens, labels = corpus.part("train")
    topic = corpus.topic_ids
    holds = (tokens[:, :, None] == topic).any(1)  # (N, T)
    if not bool((holds.sum(1) == 1).all()):
        raise UserError("the reduced model needs exactly one topic word per sentence")
    which = holds.to(torch.int64).argmax(1)
    m = float((tokens[0] != PAD).sum() - 1)
    weight = torch.bincount(which, minlength=len(topic)).double() / len(tokens)
    label = torch.zeros(len(topic), dtype=torch.long).scatter_(0, which, labels)
    reduced = copy.deepcopy(model).double()
    v = reduced.embedding.detach()[topic].clone().requires_grad_(reduced.embedding.requires_grad)
    k = reduced.keys.detach()[topic].clone().requires_grad_(reduced.keys.requires_grad)
    q = reduced.query
    head = [] if reduced.head is None else list(reduced.head.parameters())
    groups = [{"params": [p for p in (v, k, q) if p.requires_grad], "lr": cfg.lr},
              {"params": head, "lr": cfg.head_lr or cfg.lr}]
    opt = torch.optim.SGD([g for g in groups if g["params"]])
    epochs, attention = [], []
    for epoch in range(cfg.epochs + 1):
        a = torch.sigmoid(k @ q - math.log(m))  # e^s / (e^s + m)
        context = a[:, None] * v
        logits = context @ reduced.fixed_head if reduced.head is None else reduced.head(context)
        if epoch % cfg.snapshot_every == 0 or epoch == cfg.epochs:
            epochs.append(epoch)
            attention.append(float(weight @ a.detach()))
        if epoch < cfg.epochs:
            opt.zero_grad(set_to_none=True)
            (weight * torch.nn.functional.cross_entropy(logits, label, reduction="none")).sum().backward()
            opt.step()
    return np.asarray(epochs), np.asarray(attention)


def tracked_words(corpus: Corpus, history: History, top: int) -> np.ndarray:
    """The topic words (synthetic) or the `top` highest-scoring real words at the end."""
    if len(corpus.topic_ids):
        return corpus.topic_ids.numpy()
    order = np.argsort(-history.scores[-1])
    return np.array([w for w in order if w not in (PAD, UNK)][:top])


def top_word_purity(history: History, corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Per snapshot: the purity |p_pos - p_neg| of the top-scoring real word (its class shares
    over the training sentences it appears in) and its training count."""
    count, class_counts, _ = corpus.word_stats
    scores = history.scores.copy()
    scores[:, [PAD, UNK]] = -np.inf
    top = scores.argmax(1)
    shares = (class_counts[top] / count[top].clamp_min(1)[:, None]).numpy()
    return np.abs(shares[:, 0] - shares[:, -1]), count[top].numpy()


def word_m(corpus: Corpus, words: np.ndarray, task_m: int) -> np.ndarray:
    """The theory's m per word: the task's m (synthetic), else the mean sentence length minus 1."""
    if len(corpus.topic_ids):
        return np.full(len(words), float(task_m))
    return corpus.word_stats[2].numpy()[words].clip(min=1.0)
