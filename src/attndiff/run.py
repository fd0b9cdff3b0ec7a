"""A run folder: config.toml (resolved), metrics.jsonl, checkpoints/, samples/, report.html.

metrics.jsonl is the run's memory: every record has a `tag` (the phase or result it belongs to),
and "is this phase done?" is a query, `run.done(tag, **where)`, never a hand-written scan. The
jobs name their tags once, as constants beside their code.

Under torchrun every rank opens the same folder, but only rank 0 writes the config and the
metrics: the others' `write_config`, `log` and `truncate_metrics` do nothing.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from attndiff import distributed
from attndiff.fsutil import write_text


class Run:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        for folder in (self.path, self.checkpoints, self.samples):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, toml_text: str) -> None:
        if distributed.is_main():
            write_text(self.path / "config.toml", toml_text)

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line; non-finite floats are written as null (JSON has no NaN)."""
        if not distributed.is_main():
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        clean.setdefault("time", round(time.time(), 3))
        with open(self.metrics_path, "ab+") as f:
            f.seek(0, 2)
            if f.tell() and (f.seek(-1, 2), f.read(1))[1] != b"\n":
                f.write(b"\n")  # a line cut short by a kill stays alone on its line (and is skipped)
            f.write((json.dumps(clean) + "\n").encode())

    def metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        out = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill: ignore it
                continue
        return out

    def find(self, tag: str | None = None, **where: Any) -> list[dict[str, Any]]:
        """The records with this tag (any tag for None) whose fields equal `where`, in logged order."""
        return [r for r in self.metrics()
                if (tag is None or r.get("tag") == tag) and all(r.get(k) == v for k, v in where.items())]

    def last(self, tag: str | None = None, **where: Any) -> dict[str, Any] | None:
        """The newest matching record, or None."""
        found = self.find(tag, **where)
        return found[-1] if found else None

    def done(self, tag: str | None = None, **where: Any) -> bool:
        """True when a matching record was logged (a finished phase, evaluation or result)."""
        return self.last(tag, **where) is not None

    def truncate_metrics(self, keep) -> None:
        """Keep only the records for which keep(record) is true (used when resuming)."""
        if not distributed.is_main():
            return
        kept = [r for r in self.metrics() if keep(r)]
        write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
