"""The README's "Fresh machine" and "Using it" commands, run as written in a folder laid out like a
fresh clone (the venv at .venv), and their shown outputs checked against what they print."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)


def block(section: str) -> list[str]:
    """The lines of the first fenced block after the README heading ``section``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text.split(f"\n## {section}\n", 1)[1]
    return after.split("```", 2)[1].split("\n")[1:]


def hits(text: str) -> list[tuple[int, str, float]]:
    """(rank, file name, distance) of a JSON answer, a TSV listing or a table."""
    if text.startswith("{"):
        return [(r["rank"], os.path.basename(r["path"]), r["distance"]) for r in json.loads(text)["results"]]
    rows = [[f.strip() for f in re.split(r"\t|│", line) if f.strip()] for line in text.splitlines()]
    return [(int(r[0]), os.path.basename(r[2]), float(r[1])) for r in rows if r and r[0].isdigit()]


@pytest.mark.skipif(not (VENV / "bin" / "activate").exists(), reason="needs the tests to run from a venv")
def test_the_readme_runs_as_written(tmp_path):
    (tmp_path / ".venv").symlink_to(VENV)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    install, = [line for line in block("Fresh machine") if line.startswith("python3 -m venv")]
    steps = [s for s in install.split(" && ") if not s.startswith(("python3 -m venv", ".venv/bin/pip install"))]
    assert steps[0].startswith(".venv/bin/python examples/make_photos.py")
    subprocess.run(" && ".join(steps), shell=True, cwd=tmp_path, check=True, capture_output=True, timeout=600)

    shown: list[tuple[str, list[str]]] = []  # (command, the output the README shows for it)
    for line in block("Using it"):
        if line.startswith("$ "):
            shown.append((line[2:], []))
        elif line and shown:
            shown[-1][1].append(line)
    commands = [c for c, _ in shown]
    assert commands[0].startswith("source .venv/bin/activate") and not any("cat.jpg" in c for c in commands)
    assert commands[-1].startswith("lookalike serve")  # runs until stopped: the serve tests cover it
    script = "set -e\n" + "".join(f"echo '@@@ {i}'\n{c}\n" for i, c in enumerate(commands[:-1]))
    env = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_INDEX"}
    # in a session of its own, ended at the end: what it starts in the background (a web server) ends too
    run = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = run.communicate(timeout=600)
    finally:
        try:
            os.killpg(run.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    done = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr
    printed = dict(re.findall(r"@@@ (\d+)\n(.*?)(?=@@@ |\Z)", done.stdout, re.S))

    checked = 0
    for i, (command, expected) in enumerate(shown[:-1]):
        out = printed[str(i)].strip()
        if not expected:
            continue
        checked += 1
        want = "\n".join(expected)
        if want.startswith("indexed"):
            shape = re.compile(r"indexed 28, removed 0, unchanged 0, skipped 0; 28 images in \S+/idx \(.* img/s\)")
            assert shape.fullmatch(want) and shape.fullmatch(out), (want, out)
            continue
        got, claimed = hits(out), hits(want)
        assert claimed and [h[:2] for h in got] == [h[:2] for h in claimed], command
        assert all(abs(a[2] - b[2]) < 2e-3 for a, b in zip(got, claimed)), command
    assert checked == 5
    assert (tmp_path / "views.png").stat().st_size > 10_000 and (tmp_path / "remove.txt").exists()
