"""Hostile file names and damaged or read-only indexes through the command line (issue 15)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys

import pytest

from helpers import sample_photo

ODD = os.fsdecode(b"x\xff.jpg")  # not valid UTF-8: Python holds it as "x\udcff.jpg"


def cli(*args, prefix: list[str] = (), limit: int | None = None) -> tuple[int, str, str]:
    """Run ``python -m lookalike`` with a strict UTF-8 terminal, after the command ``prefix`` and under a
    file-size ``limit``; (exit code, stdout, stderr) decoded keeping non-UTF-8 bytes as surrogate escapes,
    as Python does for file names."""
    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([*prefix, sys.executable, "-m", "lookalike", *map(os.fspath, args)], capture_output=True,
                          timeout=600, env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
                          preexec_fn=limited if limit else None)
    decode = lambda b: b.decode("utf-8", "surrogateescape")  # noqa: E731
    return proc.returncode, decode(proc.stdout), decode(proc.stderr)


def test_a_file_name_that_is_not_utf8_is_indexed_queried_and_reported(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "rocket", "coffee"):
        sample_photo(name).save(photos / f"{name}.jpg")
    (photos / ODD).write_bytes((photos / "coffee.jpg").read_bytes())
    ix = tmp_path / "ix"
    code, out, err = cli("index", photos, "--index", ix, "--json")
    assert code == 0, err
    first = json.loads(out)
    assert (first["indexed"], first["skipped"]) == (4, [])
    code, out, _ = cli("index", photos, "--index", ix, "--json")
    again = json.loads(out)
    assert (again["unchanged"], again["indexed"], again["removed"]) == (4, 0, 0)  # the stored name round-trips
    code, out, err = cli("query", photos / ODD, "-k", "2", "--index", ix, "--json")
    assert code == 0, err
    hits = json.loads(out)["results"]
    assert {r["path"] for r in hits} == {str(photos / ODD), str(photos / "coffee.jpg")}
    assert [r["distance"] for r in hits] == [0.0, 0.0]
    code, out, err = cli("query", photos / "chelsea.jpg", "-k", "4", "--index", ix, "--json")
    assert code == 0, err
    assert str(photos / ODD) in [r["path"] for r in json.loads(out)["results"]]
    code, out, err = cli("query", photos / "chelsea.jpg", "-k", "4", "--index", ix)
    assert code == 0 and ODD in out, err
    listed = tmp_path / "remove.txt"
    code, out, err = cli("dedup", photos, "--index", ix, "--to-remove", listed, "-q")
    assert code == 0, err
    assert {b"coffee.jpg", b"x\xff.jpg"} & {os.path.basename(p) for p in listed.read_bytes().splitlines()}
    for command in (["query", photos / "coffee.jpg", "-k", "2"], ["dedup", photos]):
        code, out, err = cli(*command, "--index", ix, "--json")
        valid = out.encode("utf-8", "surrogateescape").decode("utf-8")  # strict: raises on bytes that are not UTF-8
        assert code == 0 and "\\udcff" in valid, err  # the name's byte as a JSON escape, read back as the name:
        assert str(photos / ODD) in _strings(json.loads(valid))
    (photos / ODD).unlink()
    code, out, _ = cli("index", photos, "--index", ix, "--json")
    assert json.loads(out)["removed"] == 1


def test_a_damaged_vector_cache_is_repaired_by_the_next_command(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "rocket", "coffee"):
        sample_photo(name).save(photos / f"{name}.jpg")
    ix = tmp_path / "ix"
    assert cli("index", photos, "--index", ix, "-q")[0] == 0
    (cache,) = ix.glob("vectors-*.npy")
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 2])  # truncated
    code, out, err = cli("query", photos / "rocket.jpg", "-k", "1", "--index", ix, "--json")
    assert code == 0, err
    assert json.loads(out)["results"][0] == {"rank": 1, "path": str(photos / "rocket.jpg"), "distance": 0.0}
    cache.write_bytes(data[:-4 * 1280] + bytes(4 * 1280))  # the last vector zeroed
    code, out, err = cli("index", photos, "--index", ix, "--json")
    assert code == 0 and json.loads(out)["unchanged"] == 3, err
    assert cache.read_bytes() == data


def _photos(folder, names=("chelsea", "rocket", "coffee")):
    folder.mkdir()
    for name in names:
        sample_photo(name).save(folder / f"{name}.jpg")
    return folder


def _without_root_override() -> list[str]:
    """A command prefix under which file modes bind even for root (CAP_DAC_OVERRIDE dropped)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file modes do not bind")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set", caps, "--inh-caps", caps, "--"]


def test_a_read_only_index_answers_and_says_read_only_when_a_write_is_needed(tmp_path):
    photos = _photos(tmp_path / "photos")
    ix = tmp_path / "ix"
    assert cli("index", photos, "--index", ix, "-q")[0] == 0
    for old in ix.glob("*.npy"):  # the cache must then be rebuilt, in memory
        old.unlink()
    before = sorted(p.name for p in ix.iterdir())
    for path in (ix, *ix.iterdir()):
        path.chmod(0o555 if path.is_dir() else 0o444)
    ro = _without_root_override()
    try:
        code, out, err = cli("query", photos / "rocket.jpg", "-k", "1", "--index", ix, "--json", prefix=ro)
        assert code == 0, err
        assert json.loads(out)["results"][0]["path"] == str(photos / "rocket.jpg")
        code, out, err = cli("show", photos / "rocket.jpg", "-n", "1", "--out", tmp_path / "s.png", "--index", ix,
                             prefix=ro)
        assert code == 0 and (tmp_path / "s.png").exists(), err
        code, out, err = cli("dedup", photos, "--index", ix, "--json", prefix=ro)
        assert code == 0 and json.loads(out)["n_images"] == 3, err
        code, out, err = cli("index", photos, "--index", ix, "--json", prefix=ro)
        assert code == 0 and json.loads(out)["unchanged"] == 3, err
        sample_photo("horse").save(photos / "horse.jpg")
        code, out, err = cli("index", photos, "--index", ix, "-q", prefix=ro)
        assert code == 1 and "read-only" in err and len(err.strip().splitlines()) == 1, err
        code, out, err = cli("index", photos, "--index", ix / "inside", "-q", prefix=ro)
        assert code == 1 and "cannot create an index" in err and len(err.strip().splitlines()) == 1, err
        assert sorted(p.name for p in ix.iterdir()) == before
    finally:
        for path in (ix, *ix.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_damaged_or_empty_catalog_and_full_disk_give_one_line(tmp_path):
    photos = _photos(tmp_path / "photos")
    ix = tmp_path / "ix"
    assert cli("index", photos, "--index", ix, "-q")[0] == 0
    catalog = ix / "index.sqlite"
    good = catalog.read_bytes()
    cache = sorted(p.name for p in ix.iterdir())
    catalog.write_bytes(b"")
    for args in (["index", photos, "-q"], ["query", photos / "rocket.jpg"]):
        code, out, err = cli(*args, "--index", ix)
        assert code == 1 and "empty (0 bytes)" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in ix.iterdir()) == cache  # the vector cache is left alone
    damaged = bytearray(good)
    damaged[4096 + 100:4096 * 3:7] = b"\xab" * len(damaged[4096 + 100:4096 * 3:7])
    catalog.write_bytes(bytes(damaged))
    code, out, err = cli("index", photos, "--index", ix, "-q")
    assert code == 1 and "malformed" in err and len(err.strip().splitlines()) == 1, err
    for i in range(40):  # enough new vectors to pass the file-size limit
        sample_photo("astronaut").rotate(i * 9).resize((64, 64)).save(photos / f"r{i}.png")
    shutil.rmtree(ix)
    code, out, err = cli("index", photos, "--index", ix, "--batch", "4", "-q", limit=200 * 1024)
    assert code == 1 and "disk" in err and len(err.strip().splitlines()) == 1, err
    code, out, err = cli("index", photos, "--index", ix, "--json")
    resumed = json.loads(out)
    assert resumed["unchanged"] > 0 and resumed["total"] == 43


def test_links_out_of_the_folder_fifos_and_unreadable_folders_are_left_out_with_a_reason(tmp_path):
    photos = _photos(tmp_path / "photos")
    outside = tmp_path / "elsewhere.jpg"
    sample_photo("horse").save(outside)
    (photos / "out.jpg").symlink_to(outside)
    (photos / "inside.jpg").symlink_to(photos / "rocket.jpg")  # stays within the folder: followed
    (photos / "dangling.jpg").symlink_to(tmp_path / "nothing.jpg")
    os.mkfifo(photos / "pipe.jpg")
    (photos / "locked").mkdir()
    sample_photo("moon").save(photos / "locked" / "moon.jpg")
    (photos / "locked").chmod(0)
    ro = _without_root_override()
    try:
        code, out, err = cli("index", photos, "--index", tmp_path / "ix", "--json", prefix=ro)
        assert code == 0, err
        report = json.loads(out)
        reasons = {os.path.basename(s["path"]): s["reason"] for s in report["skipped"]}
        assert set(reasons) == {"out.jpg", "dangling.jpg", "pipe.jpg", "locked"}
        assert "--follow-links" in reasons["out.jpg"] and "dangling" in reasons["dangling.jpg"]
        assert "regular file" in reasons["pipe.jpg"] and "cannot read folder" in reasons["locked"]
        assert report["indexed"] == 4  # three photos and the link inside the folder
        code, out, err = cli("index", photos, "--index", tmp_path / "ix", "--json", "--follow-links", prefix=ro)
        assert json.loads(out)["indexed"] == 1 and code == 0, err
    finally:
        (photos / "locked").chmod(0o755)


def _strings(value) -> set[str]:
    """Every string in a JSON value."""
    if isinstance(value, dict):
        return set().union(*map(_strings, value.values()))
    if isinstance(value, list):
        return set().union(*map(_strings, value))
    return {value} if isinstance(value, str) else set()
