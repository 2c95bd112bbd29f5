"""Deletion lists that can never remove the last copy of a photo: symbolic links, an index that no
longer matches the disk, and a disk that fills up while the list is written."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil

import pytest
from PIL import Image

from helpers import run_cli as run
from helpers import sample_photo

pytestmark = pytest.mark.slow


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _listed(listing) -> list[str]:
    return [os.fsdecode(p) for p in listing.read_bytes().split(b"\0")[:-1]]


def _review_choice(page) -> list[str]:
    """The paths the review page starts ticked (its deletion list before anyone changes it)."""
    text = page.read_text(encoding="utf-8")
    return [json.loads(html.unescape(p)) for p in re.findall(r'data-path="([^"]*)" checked', text)]


def test_removing_every_listed_file_leaves_each_group_its_kept_photo_links_included(tmp_path):
    """A link and its target are one file: after ``xargs -0 rm`` on the list (and on the review page's
    choice), every group's kept name still leads to a real file with the kept bytes."""
    root, outside = tmp_path / "photos", tmp_path / "elsewhere"
    root.mkdir(), outside.mkdir()
    sample_photo("chelsea").save(root / "photo_original_long_name.jpg", quality=90)
    (root / "p.jpg").symlink_to("photo_original_long_name.jpg")  # shorter name than its own target
    sample_photo("rocket").save(outside / "t.jpg", quality=90)  # a chain of links to a file outside
    (root / "l2_a_longer_name.jpg").symlink_to(outside / "t.jpg")
    (root / "l1.jpg").symlink_to("l2_a_longer_name.jpg")
    sample_photo("coffee").save(root / "coffee.png")
    os.link(root / "coffee.png", root / "c.png")  # a hard link: two names of one file, both real
    sample_photo("camera").save(root / "camera.png")
    listing, page = tmp_path / "remove.nul", tmp_path / "review.html"
    proc = run("dedup", root, "--index", tmp_path / "ix", "--follow-links", "--to-remove", listing, "-0",
               "--review", page, "--json", "--device", "cpu")
    out = json.loads(proc.stdout)
    listed = _listed(listing)
    assert listed == out["to_remove"] and sorted(_review_choice(page)) == sorted(listed)
    kept = {g["keep"]: _digest(g["keep"]) for g in out["groups"]}
    grouped = {g["keep"] for g in out["groups"]} | set(listed)
    assert {os.path.basename(p) for p in grouped} >= {"p.jpg", "photo_original_long_name.jpg", "l1.jpg",
                                                       "l2_a_longer_name.jpg", "coffee.png", "c.png"}
    for path in listed:
        os.remove(path)
    lost = [os.path.basename(k) for k, digest in kept.items() if not os.path.exists(k) or _digest(k) != digest]
    assert lost == [], "kept names left without their file (a dangling link counts as lost)"
    assert os.path.exists(outside / "t.jpg") and os.path.exists(root / "camera.png")


def _stale_library(tmp_path):
    """a.jpg and p.jpg, each with a byte copy that ranks after it (longer name), and a distinct photo; indexed."""
    root = tmp_path / "photos"
    root.mkdir()
    sample_photo("chelsea").save(root / "a.jpg", quality=90)
    sample_photo("coffee").save(root / "p.jpg", quality=90)
    sample_photo("camera").save(root / "camera.jpg", quality=90)
    for name in ("a", "p"):
        shutil.copyfile(root / f"{name}.jpg", root / f"copy_of_{name}.jpg")
    index = tmp_path / "ix"
    run("index", root, "--index", index, "-q", "--device", "cpu")
    return root, index


def test_a_stale_index_never_reaches_a_deletion_list(tmp_path):
    root, index = _stale_library(tmp_path)
    before = json.loads(run("dedup", "--index", index, "--json").stdout)
    assert sorted(os.path.basename(p) for p in before["to_remove"]) == ["copy_of_a.jpg", "copy_of_p.jpg"]
    os.remove(root / "a.jpg")  # a kept file deleted, another overwritten with a different photo
    sample_photo("astronaut").save(root / "p.jpg", quality=90)
    listing, page = tmp_path / "remove.txt", tmp_path / "review.html"
    for extra in (["--to-remove", listing], ["--review", page], ["--json"], []):
        proc = run("dedup", "--index", index, *extra, check=False)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "a.jpg" in proc.stderr and "lookalike index" in proc.stderr, proc.stderr
        assert "copy_of" not in proc.stdout
    assert not listing.exists() and not page.exists()
    run("index", root, "--index", index, "-q", "--device", "cpu")  # the remedy the message names
    after = json.loads(run("dedup", "--index", index, "--to-remove", listing, "--json").stdout)
    assert after["groups"] == [] and listing.read_bytes() == b""


def test_bytes_changed_behind_an_unchanged_size_and_time_are_caught(tmp_path):
    root, index = _stale_library(tmp_path)
    target = root / "copy_of_p.jpg"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    proc = run("dedup", "--index", index, "--to-remove", tmp_path / "list", check=False)
    assert proc.returncode == 1 and "copy_of_p.jpg" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "list").exists()


@pytest.mark.parametrize("option", ["--to-remove", "--review"])
def test_a_full_disk_leaves_the_list_whole_or_not_at_all(tmp_path, small_disk, option):
    """On a full disk the output is either absent or the previous whole file, never a truncated one,
    and the command says so in one line, exit 1."""
    root = tmp_path / "photos"
    root.mkdir()
    photo = sample_photo("chelsea").resize((160, 120), Image.LANCZOS)
    photo.save(root / "a.png")
    for i in range(40):  # names long enough that the list is larger than the space left
        shutil.copyfile(root / "a.png", root / f"copy {i:02d} {'x' * 150}.png")
    index = tmp_path / "ix"
    full_disk = small_disk(4096)
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
        assert sorted(p.name for p in full_disk.iterdir()) == sorted([".filler", *(["out"] if existing else [])])
