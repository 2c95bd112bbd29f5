"""The map as one self-contained HTML page: the web page's map drawing (``map.js``, inlined) over the
map's data, the images opened from their files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lookalike import atomic
from lookalike.map.cache import Map
from lookalike.map.payload import payload

TEMPLATE = Path(__file__).with_name("page.html")
MAP_JS = Path(__file__).parents[1] / "server" / "static" / "map.js"


def write_html(out: str | os.PathLike, m: Map, paths: list[str], colour: str) -> None:
    """Write the page of ``m`` (its images at ``paths``, coloured by ``colour`` to start with) to ``out``, whole or not at all."""
    data = payload(m, paths, _shown)  # names are the full paths here: the page is the user's own
    data.update(color=colour, urls=[_file_url(p) for p in paths])
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")  # no </script> in it
    page = TEMPLATE.read_text(encoding="utf-8").replace("/*MAPJS*/", MAP_JS.read_text(encoding="utf-8"))
    atomic.write(out, page.replace("/*DATA*/", text))


def _shown(path: str) -> str:
    """A path as text: bytes that are not UTF-8 show as U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _file_url(path: str) -> str:
    """The ``file:`` URL of an absolute path (any bytes, percent-encoded)."""
    from urllib.parse import quote_from_bytes

    return "file://" + quote_from_bytes(os.fsencode(path), safe="/")
