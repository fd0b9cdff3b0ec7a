"""One seed rule: every random stream of attndiff is `derive(seed, *path)`.

A stream is named by a path of integers and short strings under a user's seed, e.g.

    derive(seed, "train", step, shard)      the noise levels, noise and dropout of one training shard
    derive(seed, "epoch", epoch)            the minibatch order of one epoch
    derive(seed, "noise", index)            SFBD's frozen noise of one dataset image
    derive(seed, "backward", round, index)  the reverse-SDE noise of one image in one backward step

The path is hashed with numpy's SeedSequence (strings first through BLAKE2b), so distinct paths
give statistically independent streams and no two formulas can collide by arithmetic accident,
as ad-hoc sums like `seed * 1_000_003 + step` could. The result is a 63-bit integer that
torch.Generator.manual_seed, numpy and random all accept.

Run folders made before this rule (attndiff 0.1) drew other streams; they do not resume (the
checkpoint metadata records `seed_rule`, and training refuses a checkpoint without it).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from attndiff import UserError

RULE = 2  # recorded in checkpoint metadata; 1 was the ad-hoc formulas of attndiff 0.1


def _word(part: int | str) -> int:
    if isinstance(part, str):
        return int.from_bytes(hashlib.blake2b(part.encode(), digest_size=8).digest(), "little")
    part = int(part)
    if part < 0:
        raise UserError(f"seeds and seed path entries must be >= 0, got {part}")
    return part


def derive(seed: int, *path: int | str) -> int:
    """The seed of the stream `path` under `seed` (a 63-bit integer)."""
    hi, lo = np.random.SeedSequence([_word(seed), *map(_word, path)]).generate_state(2, np.uint32)
    return ((int(hi) << 32) | int(lo)) >> 1


def generator(seed: int, *path: int | str) -> torch.Generator:
    """A CPU torch.Generator seeded with derive(seed, *path)."""
    return torch.Generator().manual_seed(derive(seed, *path))
