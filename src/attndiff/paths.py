"""Where attndiff keeps data caches (emoji images, FID reference statistics)."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """$ATTNDIFF_CACHE, or ~/.cache/attndiff (the Makefile uses the same default)."""
    return Path(os.environ.get("ATTNDIFF_CACHE") or Path.home() / ".cache" / "attndiff")
