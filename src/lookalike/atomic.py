"""Writing a file for the user whole or not at all.

The bytes go to a temporary file beside the target (same folder, so same file system), which is
flushed and synced, then renamed over the target, and the folder is synced. A full disk, a crash or
a kill therefore leaves the previous file (or none) or the new one, never a part of it; the
temporary file is removed when the write fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def replacing(path: str | os.PathLike, mode: str = "wb", **open_args) -> Iterator[IO]:
    """A file object open for writing (``mode``, ``open_args`` as for :func:`open`) whose content
    becomes ``path`` when the block ends without an exception; ``path`` is left as it was otherwise."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name[:100]}.{secrets.token_hex(4)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)  # the umask applies
    try:
        with open(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(folder)


def write(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8") -> None:
    """Write ``data`` (text in ``encoding``) to ``path`` whole or not at all (:func:`replacing`)."""
    with replacing(path, "wb") as f:
        f.write(data.encode(encoding) if isinstance(data, str) else data)


def _sync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (where the file system allows a folder to be synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
