"""What a terminal shows: tables that fit 80 columns with every path on one line, counts in the
right number, no rate for a run that embedded nothing, no header before an error."""

import os
import pty
import re
import shutil
import subprocess
import sys

import pytest
from rich.cells import cell_len

from helpers import run_cli as run

LONG = "a very long folder name for photos/holiday 2024 in the mountains"


def in_terminal(*args, columns: int = 80) -> tuple[int, str, str]:
    """Run ``python -m lookalike ARGS`` with its standard output on a pseudo-terminal ``columns``
    wide; the exit code, what the terminal showed (escape sequences removed) and standard error."""
    main, child = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "lookalike", *map(str, args)], stdout=child,
                            stderr=subprocess.PIPE, env=env)
    os.close(child)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    err = proc.stderr.read().decode()
    proc.wait(timeout=600)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode()).replace("\r\n", "\n")
    return proc.returncode, text, err


@pytest.fixture(scope="module")
def deep(photo_dir, tmp_path_factory):
    """An index of a few photos, some under a long folder path."""
    root = tmp_path_factory.mktemp("terminal")
    (root / LONG).mkdir(parents=True)
    for name in ("chelsea", "coffee"):
        shutil.copy(photo_dir / f"{name}.jpg", root / f"{name}.jpg")
    shutil.copy(photo_dir / "chelsea_flip.jpg", root / LONG / "chelsea_brighter_and_flipped.jpg")
    run("index", root, "--index", root / ".ix", "--quiet")
    return root


def test_a_table_at_80_columns_keeps_every_path_on_one_line(deep):
    code, shown, _ = in_terminal("query", deep / "chelsea.jpg", "-k", "3", "--index", deep / ".ix")
    assert code == 0
    lines = shown.strip("\n").splitlines()
    assert all(cell_len(line) <= 80 for line in lines), shown
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 3, shown  # one line per result
    names = [row.split("│")[3].strip() for row in rows]
    assert names[0] == str(deep / "chelsea.jpg") or names[0].endswith("/chelsea.jpg")
    assert any(n.endswith("/chelsea_brighter_and_flipped.jpg") and "…" in n for n in names), shown


def test_a_reindex_that_embeds_nothing_gives_no_rate(deep):
    again = run("index", deep, "--index", deep / ".ix").stdout
    assert again.startswith("indexed 0, removed 0, unchanged 3, skipped 0; 3 images in ")
    assert re.search(r"\(\d+\.\d s\)\n$", again) and "img/s" not in again


def test_a_single_image_and_a_single_file_are_counted_in_the_singular(photo_dir, tmp_path):
    (tmp_path / "one").mkdir()
    shutil.copy(photo_dir / "coffee.jpg", tmp_path / "one" / "coffee.jpg")
    (tmp_path / "one" / "notes.txt").write_text("x")
    out = run("index", tmp_path / "one", "--index", tmp_path / "ix").stdout
    assert ", ignored 1 other file (1 .txt); 1 image in " in out and re.search(r"\d s, \d+\.\d img/s\)\n$", out)


def test_a_folder_as_a_query_is_one_line_and_no_header(deep):
    proc = run("query", deep, "--index", deep / ".ix", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"error: {deep}: a folder, not an image: give image files (such as {deep / '*.jpg'})\n"
