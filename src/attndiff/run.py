"""A run folder: config.toml (resolved), metrics.jsonl, checkpoints/, samples/, report.html."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

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
        write_text(self.path / "config.toml", toml_text)

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line; non-finite floats are written as null (JSON has no NaN)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        clean.setdefault("time", round(time.time(), 3))
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(clean) + "\n")

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

    def truncate_metrics(self, keep) -> None:
        """Keep only the records for which keep(record) is true (used when resuming)."""
        kept = [r for r in self.metrics() if keep(r)]
        write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
