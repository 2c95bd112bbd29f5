"""What the benchmarks share: the one way they report (JSON on stdout, and in ``--out`` when given)
and the one way they find the flowers51 development photos."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

#: flowers51 (Oxford 102 Flowers, classes 001-051, 40 photos each, one folder per class):
#: ``$LOOKALIKE_FLOWERS``, else ``data/flowers51`` in the repository (ignored by git: the photos are
#: not part of the repository).
FLOWERS51 = Path(os.environ.get("LOOKALIKE_FLOWERS") or Path(__file__).resolve().parents[1] / "data" / "flowers51")


def emit(report: dict, out: str | Path | None = None, indent: int | None = 2) -> None:
    """Print ``report`` as JSON (indented unless ``indent`` is None) and, when ``out`` is set, write
    the same text there."""
    text = json.dumps(report, indent=indent, ensure_ascii=False)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


def end_of_run() -> dict:
    """The load average at the end of a run and the CPU seconds this process and its children used."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return {"loadavg_end": [round(v, 2) for v in os.getloadavg()],
            "cpu_seconds_this_process": round(sum(u.ru_utime + u.ru_stime for u in usage), 1)}


def flowers51(path: str | Path | None = None) -> Path:
    """The flowers51 folder (``path``, else :data:`FLOWERS51`); exit 2 with one line when it is absent."""
    found = Path(path) if path is not None else FLOWERS51
    if not found.is_dir():
        print(f"flowers51 not found at {found}: this benchmark needs the flowers51 photos (set "
              "LOOKALIKE_FLOWERS to their folder or put them at data/flowers51); they are not part of "
              "the repository.", file=sys.stderr)
        sys.exit(2)
    return found
