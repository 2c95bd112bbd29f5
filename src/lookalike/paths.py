"""Where lookalike keeps its files when not told: the cache and the default index. The one place
such paths are normalised (``~`` expanded, made absolute)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir(*parts: str) -> Path:
    """``$LOOKALIKE_CACHE``, else the user's cache directory, joined with ``parts``."""
    return _normal(os.environ.get("LOOKALIKE_CACHE") or platformdirs.user_cache_dir("lookalike")).joinpath(*parts)


def index_path(path: str | os.PathLike | None = None) -> Path:
    """The index folder ``path``, else ``$LOOKALIKE_INDEX``, else an index in the user's data directory."""
    if path is None:
        path = os.environ.get("LOOKALIKE_INDEX") or Path(platformdirs.user_data_dir("lookalike")) / "index"
    return _normal(path)


def _normal(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().absolute()
