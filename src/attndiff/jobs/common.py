"""What every job does around its own work: the run folder with the resolved config, this
rank's device, the seed of the network's initialisation, rank-0-only evaluation and the report
at the end."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch

from attndiff import config, distributed, progress, seeding
from attndiff.report.html import write_report
from attndiff.run import Run


def on_this_rank(cfg):
    """The job config with this rank's device (under torchrun, 'cuda' is the rank's own GPU)."""
    return dataclasses.replace(cfg, device=distributed.device(cfg.device))


class Job:
    """A job's run folder and its config on this rank.

    Opening it writes config.toml (rank 0; `header` adds fields such as a baseline's kind) and,
    with `seed`, seeds the global RNG that network initialisation draws from.
    """

    def __init__(self, cfg, *, run_dir: Path | None = None, header: dict[str, Any] | None = None,
                 seed: int | None = None):
        self.run = Run(run_dir or cfg.run_dir)
        self.run.write_config(config.dumps_toml({**(header or {}), **config.to_dict(cfg)}))
        self.cfg = on_this_rank(cfg) if hasattr(cfg, "device") else cfg
        if seed is not None:
            torch.manual_seed(seeding.derive(seed, "init"))

    @property
    def path(self) -> Path:
        return self.run.path

    def on_main(self, fn: Callable, *args, **kwargs):
        """fn run by rank 0 alone (evaluation); every rank gets its result, or its error."""
        return distributed.on_main(fn, *args, **kwargs)

    def finish(self, title: str, sections: Callable[[], list[str]] = list) -> Path:
        """Write report.html (rank 0) with the job's own sections; the run folder."""
        if distributed.is_main():
            report = write_report(self.run.path, title=title, extra_sections=sections())
            progress.say(f"report: {report}")
        return self.run.path
