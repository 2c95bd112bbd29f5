"""Indexes the end-to-end tests of several commands share, made once per run by ``lookalike index``
(tests only read them)."""

import json
import shutil

import pytest

from helpers import ODD_NAME as ODD
from helpers import run_cli as run


@pytest.fixture(scope="session")
def indexed(photo_dir, tmp_path_factory):
    ix = tmp_path_factory.mktemp("ix") / "index"
    report = json.loads(run("index", photo_dir, "--index", ix, "--json").stdout)
    return ix, report


@pytest.fixture(scope="session")
def odd(photo_dir, tmp_path_factory):
    """An index of photos under folders whose names have brackets, spaces and unicode, one of them long."""
    root = tmp_path_factory.mktemp("odd") / ODD
    deep = root / ("a very long folder name that a table at eighty columns would wrap " * 2).strip()
    deep.mkdir(parents=True)
    for name in ("chelsea", "coffee", "rocket"):
        shutil.copy(photo_dir / f"{name}.jpg", root / f"{name} [1].jpg")
    shutil.copy(photo_dir / "chelsea_flip.jpg", deep / "chelsea [flip].jpg")
    ix = root.parent / "index"
    run("index", root, "--index", ix, "--quiet")
    return root, ix
