"""Where images and shards live: a local path, or a filesystem URI (any pyarrow filesystem, else fsspec).

Files are named by local absolute path, or by their full URI (``s3://bucket/a.jpg``), so a name read
back from a shard opens the same file again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from lookalike.images import (DEFAULT_MAX_PIXELS, FileTooLarge, ImageError, is_image_path, list_images, max_file_bytes,
                              read_file)
from lookalike.index.store import StoreError


def is_uri(location: str) -> bool:
    """True for ``scheme://…`` locations (``file://`` included), false for plain local paths."""
    return "://" in location


def filesystem(location: str):
    """``(pyarrow FileSystem, path inside it)`` for a local path or URI; a scheme pyarrow cannot open
    goes through fsspec (s3fs, gcsfs, adlfs, http, ...). :class:`StoreError` in one line, with both
    reasons, when neither can (fsspec's names the package to install)."""
    from pyarrow import fs

    if not is_uri(location):
        return fs.LocalFileSystem(), os.path.abspath(location)
    try:
        return fs.FileSystem.from_uri(location)
    except Exception as arrow:  # pyarrow does not know the scheme, or cannot reach it
        import fsspec

        try:
            handler, path = fsspec.core.url_to_fs(location)
        except (ImportError, ValueError, OSError) as e:
            reasons = " ".join(f"{arrow}; through fsspec: {e}".split())
            raise StoreError(f"cannot open {location}: {reasons}") from None
        return fs.PyFileSystem(fs.FSSpecHandler(handler)), path


def list_files(source: str) -> Iterator[tuple[str, int, int]]:
    """Yield ``(name, size, mtime_ns)`` of the image files under ``source``, sorted by name.

    Local folders are listed as ``lookalike index`` lists them (symlink loops once, hidden folders
    skipped); a file that cannot be stat'ed gets size -1, so reading it later gives the reason.
    """
    if not is_uri(source):
        if not os.path.exists(source):
            raise FileNotFoundError(f"no such file or folder: {source}")
        for path in list_images(source):
            try:
                st = os.stat(path)
            except OSError:
                yield path, -1, 0
                continue
            yield path, st.st_size, st.st_mtime_ns
        return
    from pyarrow import fs

    handle, root = filesystem(source)
    scheme = source.split("://", 1)[0]
    info = handle.get_file_info(root)
    if info.type == fs.FileType.File:
        infos = [info]
    elif info.type == fs.FileType.Directory:
        infos = handle.get_file_info(fs.FileSelector(root, recursive=True))
    else:
        raise FileNotFoundError(f"no such file or folder: {source}")
    found = []
    for info in infos:
        inner = info.path[len(root):].lstrip("/")
        hidden = any(part.startswith(".") for part in inner.split("/")[:-1])
        if info.type == fs.FileType.File and is_image_path(info.path) and not hidden:
            found.append((f"{scheme}://{info.path}", info.size, info.mtime_ns or 0))
    yield from sorted(found)


def name_of(source: str) -> str:
    """``source`` itself named as :func:`list_files` names the files under it (no trailing slash)."""
    if not is_uri(source):
        return os.path.abspath(source)
    return f"{source.split('://', 1)[0]}://{filesystem(source)[1]}".rstrip("/")


def absolute(location: str) -> str:
    """``location`` as another process must see it (a relative local path is this one's)."""
    return location if is_uri(location) else os.path.abspath(location)


def vanished(held, source: str, listed: set[str]) -> list[str]:
    """The names of ``held`` under ``source`` that are not among the ``listed`` names (sorted)."""
    root = name_of(source)
    below = root + ("/" if is_uri(source) else os.sep)
    return sorted(p for p in held if p not in listed and (p == root or p.startswith(below)))


def gone(held, source: str) -> list[str]:
    """The names of ``held`` under ``source`` that :func:`list_files` no longer finds there."""
    return vanished(held, source, {name for name, _, _ in list_files(source)})


def read(name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes of a file named by path or URI, as :func:`~lookalike.images.read_file` reads them
    (at most :func:`~lookalike.images.max_file_bytes`); :class:`ImageError` with the reason when unreadable."""
    if not is_uri(name):
        return read_file(name, max_pixels)
    limit = max_file_bytes(max_pixels)
    try:
        handle, path = filesystem(name)
        with handle.open_input_stream(path) as stream:
            data = stream.read(limit + 1)
    except (OSError, StoreError) as e:
        raise ImageError(f"cannot read file: {e}") from None
    if len(data) > limit:
        raise FileTooLarge(max_pixels)
    return data
