"""What a deletion list is checked against before anyone sees it: the disk.

A grouped file that is not what the index holds any more (gone, no longer a regular file, another
size, time or content) makes the report stale (:func:`confirm` raises :class:`StaleIndex`), and a
symbolic link is one file with what it leads to (:func:`link_chain`): removing a listed name must
never take the file a kept name leads to.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

from lookalike.images import ImageError, hash_file
from lookalike.text import plural

#: Symbolic links followed before a name counts as a loop (Linux's own limit).
MAX_HOPS = 40


class StaleIndex(ValueError):
    """The index no longer matches the disk for files a report would list or keep."""


def _entry(path: str) -> str:
    """Where the directory entry ``path`` names lives: its folder resolved, its own name kept."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(folder), name)


def link_chain(path: str) -> list[str]:
    """The entries ``path`` passes through to its file: itself, then each symbolic link's target in
    turn, ending at the file itself (folders on the way resolved, so every name is comparable)."""
    chain = [_entry(path)]
    while len(chain) <= MAX_HOPS:
        try:
            target = os.readlink(chain[-1])
        except OSError:  # not a link (or gone): the end of the chain
            break
        chain.append(_entry(os.path.join(os.path.dirname(chain[-1]), target)))
    return chain


def link_hops(path: str) -> int:
    """How many symbolic links lead from ``path`` to its file (0 for the file itself)."""
    return len(link_chain(path)) - 1 if os.path.islink(path) else 0


def lost_by_removal(keep: list[str], listed: list[str]) -> list[str]:
    """The kept names that removing every ``listed`` name would leave without their file."""
    removed = {_entry(p) for p in listed}
    return [k for k in keep if not removed.isdisjoint(link_chain(k))]


def confirm(indexed: Mapping[str, tuple[int, int, str]]) -> None:
    """Check each file against what the index holds for it, ``(size, mtime_ns, content hash)`` by
    path: it still exists, is a regular file (or a link to one) of that size and modification time,
    and has those bytes. :class:`StaleIndex` (one line: what changed, the remedy) otherwise."""
    changed = []
    for path, (size, mtime_ns, digest) in indexed.items():
        why = _change(path, size, mtime_ns, digest)
        if why:
            changed.append(f"{path} {why}")
    if changed:
        more = f" (and {plural(len(changed) - 1, 'more file')})" if len(changed) > 1 else ""
        raise StaleIndex(f"the index no longer matches the disk: {changed[0]}{more}; nothing was listed. "
                         "Update it (lookalike index FOLDER, or give dedup the FOLDER) and run dedup again")


def _change(path: str, size: int, mtime_ns: int, digest: str) -> str:
    """How the file at ``path`` differs from what was indexed ("" when it does not)."""
    try:
        st = os.stat(path)
    except OSError:
        return "is gone (or its link leads nowhere)"
    if not stat.S_ISREG(st.st_mode):
        return "is no longer a regular file"
    if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
        return "changed since it was indexed (size or modification time)"
    try:
        same = hash_file(path) == digest
    except ImageError as e:
        return f"cannot be read ({e})"
    return "" if same else "holds other bytes than were indexed"
