"""Progress bars and messages, configured in one place.

On a terminal a bar redraws several times a second. When stderr is not a terminal (a log file,
CI, nohup) it updates at most every 30 s, so a long run redirected to a file writes a line per
half minute instead of thousands. Under torchrun only rank 0 draws.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from attndiff import distributed

LOG_INTERVAL_S = 30.0


def _interactive() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def bar(iterable=None, *, desc: str | None = None, total: int | None = None, unit: str = "it",
        disable: bool = False, **kwargs) -> tqdm:
    """A tqdm bar that vanishes when done (leave=False), drawn by rank 0 only."""
    if not _interactive():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", LOG_INTERVAL_S)
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=kwargs.pop("leave", False),
                disable=disable or not distributed.is_main(), **kwargs)


def say(message: str) -> None:
    """A message printed once (by rank 0) without breaking a bar in progress."""
    if distributed.is_main():
        tqdm.write(message)


def warn(message: str) -> None:
    """A warning on stderr (rank 0), without breaking a bar in progress."""
    if distributed.is_main():
        tqdm.write(f"warning: {message}", file=sys.stderr)
