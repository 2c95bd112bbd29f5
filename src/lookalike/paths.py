"""Where lookalike keeps its files when not told: the cache and the default index."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir(*parts: str) -> Path:
    """``$LOOKALIKE_CACHE``, else the user's cache directory, joined with ``parts``."""
    return Path(os.environ.get("LOOKALIKE_CACHE") or platformdirs.user_cache_dir("lookalike")).joinpath(*parts)


def default_index_path() -> Path:
    """``$LOOKALIKE_INDEX``, else an index in the user's data directory."""
    return Path(os.environ.get("LOOKALIKE_INDEX") or Path(platformdirs.user_data_dir("lookalike")) / "index")
