"""Where attndiff keeps data caches (emoji images, FID reference statistics) and finds the data
files that registry packages install."""

import importlib.util
import os
from pathlib import Path

from attndiff import UserError


def cache_dir() -> Path:
    """$ATTNDIFF_CACHE, or ~/.cache/attndiff (the Makefile uses the same default)."""
    return Path(os.environ.get("ATTNDIFF_CACHE") or Path.home() / ".cache" / "attndiff")


def package_file(package: str, relative: str, install: str) -> Path:
    """The file `relative` inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)  # locate without importing (imports have side effects)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package '{package}' is not installed: run `{install}` (or `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall with `{install}`")
    return path
