"""Hostile file names and damaged or read-only indexes through the command line (issue 15)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import sample_photo

ODD = os.fsdecode(b"x\xff.jpg")  # not valid UTF-8: Python holds it as "x\udcff.jpg"


def cli(*args, env: dict | None = None) -> tuple[int, str, str]:
    """Run ``python -m lookalike`` with a strict UTF-8 terminal; (exit code, stdout, stderr) decoded
    keeping non-UTF-8 bytes as surrogate escapes, as Python does for file names."""
    proc = subprocess.run([sys.executable, "-m", "lookalike", *map(os.fspath, args)], capture_output=True,
                          timeout=600, env={**os.environ, "PYTHONIOENCODING": "utf-8:strict", **(env or {})})
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
