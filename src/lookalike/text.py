"""Wording shared by messages, terminal tables, pictures and the server: counts with the right plural,
long names shortened in the middle so that both their start and their end stay readable, and a
file's base name as valid text."""

from __future__ import annotations

import os

from rich.cells import cell_len

ELLIPSIS = "…"


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``n`` and the noun in the number it needs: ``1 file``, ``2 files``, ``1 entry`` / ``2 entries``
    (``nouns`` when the plural is not ``noun + "s"``)."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def display_name(path: str) -> str:
    """The base name of a path as valid text: bytes that are not UTF-8 show as U+FFFD."""
    return os.path.basename(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` terminal cells: unchanged when it fits, else its start and end
    around an ellipsis (the end gets the extra cell: that is where a file name is)."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head = _fit(text, (width - 1) // 2)
    tail = _fit(text[::-1], width - 1 - cell_len(head))[::-1]
    return f"{head}{ELLIPSIS}{tail}"


def short_path(path: str, width: int, parts: int = 0) -> str:
    """``path`` in at most ``width`` cells, keeping its file name whole where it can.

    ``parts`` > 0 keeps only the last ``parts`` components (``2``: ``folder/name.jpg``). When the
    whole does not fit, whole folders give way in the middle, the ones next to the name kept
    longest (``/data/…/cats/tabby.jpg``), or where not even one fits, the folders' text does
    (``/da…ats/tabby.jpg``); a name too long for the width is shortened in its middle.
    """
    path = path.replace(os.sep, "/")
    if parts > 0:
        path = "/".join(path.rstrip("/").split("/")[-parts:])
    if cell_len(path) <= width:
        return path
    *folders, name = path.split("/")
    if folders[:1] == [""] and len(folders) > 1:  # "/data": the root stays with the first folder
        folders[:2] = ["/" + folders[1]]
    head, tail = [], []
    shortened = ELLIPSIS + "/" + name
    if cell_len(shortened) > width:
        return middle(name, width)
    while len(head) + len(tail) < len(folders) - 1:  # all of them would be the whole path
        more_tail = len(tail) <= len(head)
        h, t = (head, [folders[-len(tail) - 1], *tail]) if more_tail else ([*head, folders[len(head)]], tail)
        text = "/".join([*h, ELLIPSIS, *t, name])
        if cell_len(text) > width:
            break
        head, tail, shortened = h, t, text
    room = width - cell_len(name) - 1
    if not head and not tail and room > 4:  # no folder fits whole: the start and end of their names
        return middle("/".join(folders), room) + "/" + name
    return shortened


def _fit(text: str, width: int) -> str:
    """The longest start of ``text`` that takes at most ``width`` cells."""
    out, used = [], 0
    for ch in text:
        used += cell_len(ch)
        if used > width:
            break
        out.append(ch)
    return "".join(out)
