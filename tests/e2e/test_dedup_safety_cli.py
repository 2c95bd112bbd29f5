"""Deletion lists that can never remove the last copy of a photo: symbolic links, an index that no
longer matches the disk, and a disk that fills up while the list is written."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from PIL import Image

from helpers import run_cli as run
from helpers import sample_photo

pytestmark = pytest.mark.slow


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 64 KiB file system with 4 KiB left (a tmpfs: needs root; skipped otherwise)."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        (where / "filler").write_bytes(b"x" * (60 * 1024))
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize("option", ["--to-remove", "--review"])
def test_a_full_disk_leaves_the_list_whole_or_not_at_all(tmp_path, full_disk, option):
    """On a full disk the output is either absent or the previous whole file, never a truncated one,
    and the command says so in one line, exit 1."""
    root = tmp_path / "photos"
    root.mkdir()
    photo = sample_photo("chelsea").resize((160, 120), Image.LANCZOS)
    photo.save(root / "a.png")
    for i in range(40):  # names long enough that the list is larger than the space left
        shutil.copyfile(root / "a.png", root / f"copy {i:02d} {'x' * 150}.png")
    index = tmp_path / "ix"
    out = full_disk / "out"
    whole = tmp_path / "whole"
    run("dedup", root, "--index", index, option, whole, "-q", "--device", "cpu")
    assert os.path.getsize(whole) > 8192
    previous = b"an earlier list, kept whole\n"
    for existing in (None, previous):
        if existing is not None:
            out.write_bytes(existing)
        proc = run("dedup", "--index", index, option, out, check=False)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "No space left" in proc.stderr, proc.stderr
        assert (out.read_bytes() == existing) if existing is not None else not out.exists()
        assert sorted(p.name for p in full_disk.iterdir()) == sorted(["filler", *(["out"] if existing else [])])
