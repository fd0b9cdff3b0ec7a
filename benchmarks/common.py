"""Helpers shared by the benchmark scripts: timing medians, JSON results, README tables."""

from __future__ import annotations

import json
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from attndiff.fsutil import write_text

HERE = Path(__file__).parent


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> dict:
    """The machine a result was measured on: CPU model, its bf16 features, threads, torch."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                     model)
        flags = " ".join(f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f" {f}" in info)
    except OSError:
        pass
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processor": model, "cpu_flags": flags}


def command_line() -> str:
    """The command that reproduces a result: this script and its arguments as given."""
    return " ".join(["python", *(shlex.quote(a) for a in sys.argv)])


def save_results(name: str, results: dict, table: str) -> None:
    """Write results/<name>.json and replace the <name> section of benchmarks/README.md (atomically)."""
    out = HERE / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    write_text(out, json.dumps({"machine": machine(), "command": command_line(), **results}, indent=2) + "\n")
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{table.strip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + f"\n\n## {name}\n\n{block}\n"
    write_text(readme, text)
    print(table)


def earlier(name: str, same: dict) -> dict:
    """results/<name>.json as an earlier run of a resumable benchmark left it ({} if none), for a
    rerun to add to: the record that travels between checkouts and machines, where run folders do
    not. An error if it measured something else (a value of `same` differs)."""
    path = HERE / "results" / f"{name}.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    differ = [k for k, v in same.items() if old.get(k) != v]
    if differ:
        raise SystemExit(f"error: results/{name}.json holds another measurement ({', '.join(differ)} differ): rerun "
                         "with its settings to add to it, or with --name to start another results file")
    for run in old.get("runs", []):
        run.setdefault("command", old.get("command"))
        run.setdefault("machine", old.get("machine"))
    return old


def commands(old: dict) -> list[str]:
    """The command lines behind a resumable benchmark's results: an earlier run's and this one."""
    out = old.get("commands") or ([old["command"]] if "command" in old else [])
    return out if command_line() in out else [*out, command_line()]


def stats(values: list[float]) -> dict:
    """Mean, sample std (None for one value), count and the values themselves."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values), "values": values}


@contextmanager
def worktree(revision: str) -> Iterator[tuple[Path, str]]:
    """A temporary git worktree of `revision` (to run the code as it was, side by side with this
    checkout) and the revision's full hash; removed afterwards."""
    root = HERE.parent
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=root, check=True,
                       capture_output=True)
        try:
            full = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, check=True, capture_output=True,
                                  text=True).stdout.strip()
            yield tree, full
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, check=False)


def grids_figure(panels: list[tuple[str, Path]], path: Path) -> None:
    """Sample grids (PNG files) side by side, each under its title, saved as `path`."""
    import numpy as np
    from PIL import Image

    from attndiff.report.figures import plt, save_figure

    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.3), squeeze=False)
    for ax, (title, grid) in zip(axes[0], panels):
        ax.imshow(np.asarray(Image.open(grid)), cmap="gray")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)
