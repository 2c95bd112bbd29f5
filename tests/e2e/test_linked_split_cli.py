"""A split made of symbolic links to class folders elsewhere, through ``index``, ``evaluate`` and ``train``:
left out with the reason and the way to include it, and taken in whole with ``--follow-links``."""

import json
import os

import numpy as np
import pytest

from helpers import run_cli as run
from helpers import sample_photo

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
HINT = "left out: 4 symbolic links to outside the folder (--follow-links includes them)"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """``classes/<photo>/`` with five crops each, and ``split/`` holding only links to them."""
    base = tmp_path_factory.mktemp("linked")
    rng = np.random.default_rng(2)
    for name in PHOTOS:
        (base / "classes" / name).mkdir(parents=True)
        img = sample_photo(name)
        w, h = img.size
        for i in range(5):
            x, y = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
            img.crop((x, y, x + w // 2, y + h // 2)).resize((64, 64)).save(base / "classes" / name / f"{i}.jpg")
    (base / "split").mkdir()
    for name in PHOTOS:
        os.symlink(base / "classes" / name, base / "split" / name)
    return base / "split"


@pytest.mark.parametrize("command", [["index", "--index", "IX"], ["evaluate"], ["train", "--out", "MODEL"]])
def test_each_command_says_the_links_were_left_out_and_how_to_include_them(split, tmp_path, command):
    args = [str(tmp_path / a) if a in ("IX", "MODEL") else a for a in command]
    proc = run(args[0], split, *args[1:], check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: no images under {split}") and HINT in line
    verbose = run(args[0], split, *args[1:], "-v", check=False)
    listed = [ln for ln in verbose.stderr.splitlines() if ln.startswith("left out ")]
    assert listed == [f"left out {split / name}: symbolic link to outside the folder (use --follow-links to include "
                      "it)" for name in sorted(PHOTOS)]
    assert not (tmp_path / "IX").exists() and not (tmp_path / "MODEL").exists()


def test_index_and_evaluate_take_the_linked_classes_with_follow_links(split, tmp_path):
    report = json.loads(run("index", split, "--index", tmp_path / "ix", "--follow-links", "--json").stdout)
    assert report["indexed"] == 20 and report["skipped"] == []
    assert sorted(report["paths"]["added"]) == sorted(str(split / n / f"{i}.jpg") for n in PHOTOS for i in range(5))
    out = json.loads(run("evaluate", split, "--follow-links", "--json").stdout)
    assert (out["n_images"], out["n_classes"], out["skipped"]) == (20, 4, [])


def test_a_partly_linked_split_notes_what_it_left_out(split, tmp_path):
    part = tmp_path / "part"
    part.mkdir()
    os.symlink(split / "chelsea", part / "linked")  # to outside
    (part / "real").mkdir()
    sample_photo("coins").resize((48, 48)).save(part / "real" / "0.png")
    proc = run("evaluate", part, "--json", check=False)  # a class of one image left: nothing to evaluate
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("left out: 1 symbolic link to outside the folder (--follow-links includes it)")
    report = json.loads(run("index", part, "--index", tmp_path / "ix", "--json").stdout)
    assert report["indexed"] == 1
    assert report["skipped"] == [{"path": str(part / "linked"), "reason": "symbolic link to outside the folder (use "
                                  "--follow-links to include it)"}]


@pytest.mark.slow
def test_train_learns_from_the_linked_classes_with_follow_links(split, tmp_path):
    proc = run("train", split, "--out", tmp_path / "model", "--follow-links", "--epochs", "1", "--unfreeze", "1",
               "--train-size", "64", "--batch", "8", "--dim", "16", "--val-split", "none", "--json")
    summary = json.loads(proc.stdout)
    assert summary["left_out"] == [] and summary["epochs"] == 1
    meta = json.loads((tmp_path / "model" / "lookalike.json").read_text())
    assert meta["split"]["train_classes"] == 4 and meta["split"]["train_images"] == 20
