"""A damaged, emptied or read-only index, and a full disk, through every command: the next command repairs
what it can, answers read-only, or stops with one line; nothing is lost."""

import json
import shutil

from helpers import photo_folder, run_cli_utf8, sample_photo, without_root_override


def test_a_damaged_vector_cache_is_repaired_by_the_next_command(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "rocket", "coffee"):
        sample_photo(name).save(photos / f"{name}.jpg")
    ix = tmp_path / "ix"
    assert run_cli_utf8("index", photos, "--index", ix, "-q")[0] == 0
    (cache,) = ix.glob("vectors-*.npy")
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 2])  # truncated
    code, out, err = run_cli_utf8("query", photos / "rocket.jpg", "-k", "1", "--index", ix, "--json")
    assert code == 0, err
    assert json.loads(out)["results"][0] == {"rank": 1, "path": str(photos / "rocket.jpg"), "distance": 0.0}
    cache.write_bytes(data[:-4 * 1280] + bytes(4 * 1280))  # the last vector zeroed
    code, out, err = run_cli_utf8("index", photos, "--index", ix, "--json")
    assert code == 0 and json.loads(out)["unchanged"] == 3, err
    assert cache.read_bytes() == data


def test_a_read_only_index_answers_and_says_read_only_when_a_write_is_needed(tmp_path):
    photos = photo_folder(tmp_path / "photos")
    ix = tmp_path / "ix"
    assert run_cli_utf8("index", photos, "--index", ix, "-q")[0] == 0
    for old in ix.glob("*.npy"):  # the cache must then be rebuilt, in memory
        old.unlink()
    before = sorted(p.name for p in ix.iterdir())
    for path in (ix, *ix.iterdir()):
        path.chmod(0o555 if path.is_dir() else 0o444)
    ro = without_root_override()
    try:
        code, out, err = run_cli_utf8("query", photos / "rocket.jpg", "-k", "1", "--index", ix, "--json", prefix=ro)
        assert code == 0, err
        assert json.loads(out)["results"][0]["path"] == str(photos / "rocket.jpg")
        code, out, err = run_cli_utf8("show", photos / "rocket.jpg", "-n", "1", "--out", tmp_path / "s.png", "--index", ix,
                             prefix=ro)
        assert code == 0 and (tmp_path / "s.png").exists(), err
        code, out, err = run_cli_utf8("dedup", photos, "--index", ix, "--json", prefix=ro)
        assert code == 0 and json.loads(out)["n_images"] == 3, err
        code, out, err = run_cli_utf8("index", photos, "--index", ix, "--json", prefix=ro)
        assert code == 0 and json.loads(out)["unchanged"] == 3, err
        sample_photo("horse").save(photos / "horse.jpg")
        code, out, err = run_cli_utf8("index", photos, "--index", ix, "-q", prefix=ro)
        assert code == 1 and "read-only" in err and len(err.strip().splitlines()) == 1, err
        code, out, err = run_cli_utf8("index", photos, "--index", ix / "inside", "-q", prefix=ro)
        assert code == 1 and "cannot create an index" in err and len(err.strip().splitlines()) == 1, err
        assert sorted(p.name for p in ix.iterdir()) == before
    finally:
        for path in (ix, *ix.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_damaged_or_empty_catalog_and_full_disk_give_one_line(tmp_path):
    photos = photo_folder(tmp_path / "photos")
    ix = tmp_path / "ix"
    assert run_cli_utf8("index", photos, "--index", ix, "-q")[0] == 0
    catalog = ix / "index.sqlite"
    good = catalog.read_bytes()
    cache = sorted(p.name for p in ix.iterdir())
    catalog.write_bytes(b"")
    for args in (["index", photos, "-q"], ["query", photos / "rocket.jpg"]):
        code, out, err = run_cli_utf8(*args, "--index", ix)
        assert code == 1 and "empty (0 bytes)" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in ix.iterdir()) == cache  # the vector cache is left alone
    damaged = bytearray(good)
    damaged[4096 + 100:4096 * 3:7] = b"\xab" * len(damaged[4096 + 100:4096 * 3:7])
    catalog.write_bytes(bytes(damaged))
    code, out, err = run_cli_utf8("index", photos, "--index", ix, "-q")
    assert code == 1 and "malformed" in err and len(err.strip().splitlines()) == 1, err
    for i in range(40):  # enough new vectors to pass the file-size limit
        sample_photo("astronaut").rotate(i * 9).resize((64, 64)).save(photos / f"r{i}.png")
    shutil.rmtree(ix)
    code, out, err = run_cli_utf8("index", photos, "--index", ix, "--batch", "4", "-q", limit=200 * 1024)
    assert code == 1 and "disk" in err and len(err.strip().splitlines()) == 1, err
    code, out, err = run_cli_utf8("index", photos, "--index", ix, "--json")
    resumed = json.loads(out)
    assert resumed["unchanged"] > 0 and resumed["total"] == 43
