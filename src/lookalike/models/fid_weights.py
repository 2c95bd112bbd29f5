"""Finding (and, on request, downloading) the FID InceptionV3 weights file, and the network's layer
names; torch-free, so the registry and the query path can name the model without importing torch."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from pathlib import Path

from lookalike.models.errors import ModelError
from lookalike.paths import cache_dir

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILENAME}"
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_ENV = "LOOKALIKE_INCEPTION_WEIGHTS"

LAYERS: dict[str, int] = {"pool3": 2048, "mixed6e": 768, "pool2": 192, "pool1": 64}
"""Selectable feature layers and their dims: final average pool (the FID features), output of
Mixed_6e (the pre-auxiliary-classifier features), second and first max pool."""

DEFAULT_LAYER = "pool3"


class MissingWeightsError(ModelError):
    """The FID Inception weights file was not found; the message is one line for the user."""


def default_weights_path() -> Path:
    """Where the weights are cached: ``<$LOOKALIKE_CACHE or user cache dir>/weights/pt_inception-...pth``."""
    return cache_dir("weights", WEIGHTS_FILENAME)


def how_to_get() -> str:
    """The ways to provide the weights, in one line."""
    return (f"run 'lookalike models --download inception-v3-fid', or download {WEIGHTS_URL} and pass "
            f"--weights PATH, set {WEIGHTS_ENV}=PATH, or save it as {default_weights_path()}")


def find_weights(explicit: str | Path | None = None) -> tuple[Path | None, str]:
    """(path or ``None``, where it comes from): ``explicit`` (``"--weights"``), else
    ``$LOOKALIKE_INCEPTION_WEIGHTS``, else the cache file. Does not check that a given path exists."""
    for given, origin in ((explicit, "--weights"), (os.environ.get(WEIGHTS_ENV) or None, WEIGHTS_ENV)):
        if given is not None:
            return Path(given).expanduser(), origin
    path = default_weights_path()
    return (path, "cache") if path.is_file() else (None, "missing")


def resolve_weights(explicit: str | Path | None = None, *, download: bool = False) -> Path:
    """Path of the FID Inception weights: ``explicit``, else ``$LOOKALIKE_INCEPTION_WEIGHTS``, else
    the cache file (downloaded there first when ``download`` is true).

    An explicit path or env var naming a missing file is an error, not a fall-through.
    Raises :class:`MissingWeightsError` when no file is available.
    """
    path, origin = find_weights(explicit)
    if path is not None:
        if not path.is_file():
            raise MissingWeightsError(f"Inception weights file {path} (from {origin}) does not exist; " + how_to_get())
        return path
    if not download:
        raise MissingWeightsError("FID Inception weights not found; " + how_to_get())
    path = default_weights_path()
    try:
        _download(WEIGHTS_URL, path, WEIGHTS_SHA256_PREFIX)
    except OSError as e:  # includes urllib's URLError
        raise MissingWeightsError(f"could not download the FID Inception weights ({e}); " + how_to_get()) from e
    return path


def _download(url: str, dest: Path, sha256_prefix: str) -> None:
    """Fetch ``url`` to ``dest`` with progress on stderr, keeping it only if its SHA-256 hex digest
    starts with ``sha256_prefix`` (the torch hub file-name convention); ``OSError`` otherwise."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                shown = f"{100 * done // total}%" if total else f"{done / 1e6:.1f} MB"
                print(f"\rdownloading {dest.name}: {shown}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        if not digest.hexdigest().startswith(sha256_prefix):
            raise OSError(f"{url} has SHA-256 {digest.hexdigest()[:16]}..., expected {sha256_prefix}...")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
