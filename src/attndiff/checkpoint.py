"""Checkpoints: tensors in safetensors (which cannot carry code), metadata as JSON.

One file holds everything needed to resume (the JSON metadata sits in the safetensors
header, so the file is complete on its own); a readable `.json` copy is written beside it.
Writes are atomic. Loading skips a damaged newest file and falls back to the previous one.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from attndiff import UserError
from attndiff.fsutil import atomic_path, write_text

FORMAT = "attndiff-checkpoint-1"


def save(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write a checkpoint atomically; a failed write (a full disk) leaves no file behind and is a UserError."""
    path = Path(path)
    meta = {"format": FORMAT, **meta}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"attndiff": json.dumps(meta)})
        write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    except (OSError, SafetensorError) as e:
        raise UserError(f"could not write checkpoint {path} ({e})") from None


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata); a file that is not a complete attndiff checkpoint is a UserError."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["attndiff"])
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as e:
        raise UserError(f"{path} is not a readable attndiff checkpoint ({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} has checkpoint format {meta.get('format')!r}, expected {FORMAT!r}")
    return tensors, meta


def checkpoint_name(tag: str, step: int) -> str:
    return f"{tag}-{step:08d}.safetensors"


def list_checkpoints(folder: str | Path, tag: str) -> list[Path]:
    """Checkpoints of `tag` in `folder`, oldest first."""
    pattern = re.compile(rf"^{re.escape(tag)}-(\d{{8}})\.safetensors$")
    folder = Path(folder)
    found = [p for p in folder.glob(f"{tag}-*.safetensors") if pattern.match(p.name)] if folder.is_dir() else []
    return sorted(found)


def load_latest(folder: str | Path, tag: str | None):
    """The newest readable checkpoint of `tag` (None: of any tag, newest written) as (tensors, meta, path), or None."""
    if tag is None:
        folder = Path(folder)
        paths = [p for p in folder.glob("*.safetensors")] if folder.is_dir() else []
        candidates = sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True)
    else:
        candidates = list(reversed(list_checkpoints(folder, tag)))
    for path in candidates:
        try:
            tensors, meta = load(path)
            return tensors, meta, path
        except UserError as e:
            warnings.warn(f"skipping damaged checkpoint: {e}")
    return None


def prune(folder: str | Path, tag: str, keep: int) -> None:
    for path in list_checkpoints(folder, tag)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
