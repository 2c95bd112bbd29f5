"""The one way a benchmark reports: its JSON on stdout, and also in ``--out`` when given."""

from __future__ import annotations

import json
from pathlib import Path


def emit(report: dict, out: str | Path | None) -> None:
    """Print ``report`` as indented JSON and, when ``out`` is set, write the same text there."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
