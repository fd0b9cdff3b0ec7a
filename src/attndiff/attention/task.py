"""Corpora for the attention-dynamics experiments, as padded id tensors with a seeded split.

- `synthetic`: the paper's topic task. K topics with `topic_words` words each; a sentence is one
  topic word plus m words drawn uniformly (with replacement) from `vocab` random words, in
  random order; its label is the topic. All seeded (the reference code was not).
- real text: every dataset of `attndiff.data.text` (rt-polarity, imdb, sst:PATH), lower-cased and
  tokenised, with a seeded train/dev/test split unless the source brings its own (SST folders).

Ids: 0 is PAD, 1 is UNK; the vocabulary is built on the training split only. Padding
(`padding`): "mask" keeps PAD out of the softmax (the default: a sentence's attention is over
its own words); "pad" lets PAD take part with its own key and embedding, as the paper's code did.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re
from typing import Literal

import torch

from attndiff import UserError, seeding
from attndiff.data import text

PAD, UNK = 0, 1


@dataclasses.dataclass
class TaskConfig:
    name: str = "synthetic"  # synthetic, rt-polarity, imdb, sst:PATH
    seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.01, 0.19)  # train / dev / test shares
    # synthetic task
    topics: int = 4
    topic_words: int = 2  # per topic
    m: int = 20  # non-topic words per sentence
    vocab: int = 5000  # random (non-topic) words
    sentences: int = 5000
    # real text
    max_len: int = 0  # > 0: keep the first max_len tokens of each text
    min_count: int = 1  # words seen fewer times in train become UNK
    padding: Literal["mask", "pad"] = "mask"

    def validate(self):
        if len(self.split) != 3 or any(s < 0 for s in self.split) or abs(sum(self.split) - 1) > 1e-6 \
                or self.split[0] == 0 or self.split[2] == 0:
            raise UserError(f"task.split must be three shares summing to 1 with train and test > 0, got {self.split}")
        for name in ("topics", "topic_words", "m", "vocab", "sentences", "min_count"):
            if getattr(self, name) < 1:
                raise UserError(f"task.{name} must be >= 1, got {getattr(self, name)}")
        if self.topics < 2 or self.max_len < 0:
            raise UserError("task: need topics >= 2 and max_len >= 0")


@dataclasses.dataclass
class Corpus:
    name: str
    tokens: torch.Tensor  # (N, L) int64 word ids, PAD-padded
    labels: torch.Tensor  # (N,) int64
    splits: dict[str, torch.Tensor]  # train / dev / test -> sentence indices
    words: list[str]  # id -> word
    classes: tuple[str, ...]
    topic_ids: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    @property
    def mask(self) -> torch.Tensor:
        return self.tokens != PAD

    def part(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.splits[split]
        return self.tokens[idx], self.labels[idx]

    @functools.cached_property
    def word_stats(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per word id over the training split: (count, class counts (V, K), mean sentence length - 1).

        The last is the theory's m for a real word: the average number of other words around it.
        """
        tokens, labels = self.part("train")
        v, k = len(self.words), len(self.classes)
        real = tokens != PAD
        flat = tokens[real]
        count = torch.bincount(flat, minlength=v).double()
        class_counts = torch.zeros(v, k, dtype=torch.float64)
        class_counts.index_put_((flat, labels[:, None].expand_as(tokens)[real]), torch.ones(len(flat),
                                                                                                dtype=torch.float64),
                                accumulate=True)
        lengths = real.sum(1, keepdim=True).expand_as(tokens)[real].double()
        m = torch.zeros(v, dtype=torch.float64).index_add_(0, flat, lengths - 1) / count.clamp_min(1)
        return count, class_counts, m


def _seeded_split(n: int, shares, seed: int) -> dict[str, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = round(shares[0] * n)
    n_dev = round(shares[1] * n)
    return {"train": perm[:n_train].sort().values, "dev": perm[n_train:n_train + n_dev].sort().values,
            "test": perm[n_train + n_dev:].sort().values}


def synthetic(cfg: TaskConfig) -> Corpus:
    gen = torch.Generator().manual_seed(cfg.seed)
    n_topic = cfg.topics * cfg.topic_words
    first_random = 2 + n_topic  # after PAD, UNK and the topic words
    labels = torch.randint(cfg.topics, (cfg.sentences,), generator=gen)
    which = torch.randint(cfg.topic_words, (cfg.sentences,), generator=gen)
    topic_word = 2 + labels * cfg.topic_words + which
    others = first_random + torch.randint(cfg.vocab, (cfg.sentences, cfg.m), generator=gen)
    tokens = torch.cat([topic_word[:, None], others], 1)
    order = torch.rand(tokens.shape, generator=gen).argsort(1)  # the topic word at a random position
    tokens = tokens.gather(1, order)
    words = ["<pad>", "<unk>"] + [f"topic{t}_{j}" for t in range(cfg.topics) for j in range(cfg.topic_words)] \
        + [f"w{i}" for i in range(cfg.vocab)]
    splits = _seeded_split(cfg.sentences, cfg.split, seeding.derive(cfg.seed, "split"))
    return Corpus("synthetic", tokens, labels, splits, words,
                  tuple(f"topic{t}" for t in range(cfg.topics)), torch.arange(2, first_random))


# --- real text ----------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-case words (with a clitic like 's kept on) and single punctuation marks; <br /> removed."""
    return _TOKEN.findall(text.lower().replace("<br />", " "))


def encode(texts: list[list[str]], vocab: dict[str, int], max_len: int) -> torch.Tensor:
    length = max(1, max(len(t) for t in texts))
    length = min(length, max_len) if max_len else length
    out = torch.full((len(texts), length), PAD, dtype=torch.long)
    for i, words in enumerate(texts):
        ids = [vocab.get(w, UNK) for w in words[:length]] or [UNK]
        out[i, :len(ids)] = torch.tensor(ids)
    return out


def build_vocab(texts: list[list[str]], min_count: int) -> list[str]:
    """PAD, UNK, then words seen at least min_count times, most frequent first (ties alphabetical)."""
    counts = collections.Counter(w for t in texts for w in t)
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ["<pad>", "<unk>"] + kept


def text_corpus(name: str, texts: list[str], labels: list[int], cfg: TaskConfig,
                splits: dict[str, torch.Tensor] | None = None) -> Corpus:
    tokens = [tokenize(t) for t in texts]
    splits = splits or _seeded_split(len(texts), cfg.split, cfg.seed)
    train_tokens = [tokens[i] for i in splits["train"].tolist()]
    words = build_vocab([t[:cfg.max_len] if cfg.max_len else t for t in train_tokens], cfg.min_count)
    vocab = {w: i for i, w in enumerate(words)}
    k = max(labels) + 1
    classes = ("negative", "positive") if k == 2 else tuple(str(c) for c in range(k))
    return Corpus(name, encode(tokens, vocab, cfg.max_len), torch.tensor(labels), splits, words, classes)


def load(cfg: TaskConfig) -> Corpus:
    """The synthetic task, or a text dataset of attndiff.data.text encoded with a training-split vocabulary."""
    if cfg.name == "synthetic":
        return synthetic(cfg)
    if cfg.name.partition(":")[0] not in text.SOURCES:
        raise UserError(f"unknown task {cfg.name!r} (known: synthetic, {', '.join(text.NAMES)})")
    data = text.load(cfg.name)
    splits = {k: torch.tensor(v, dtype=torch.long) for k, v in data.splits.items()} if data.splits else None
    return text_corpus(data.name, list(data.texts), list(data.labels), cfg, splits)
