"""The ``lookalike`` command as a user runs it: subprocesses on real photos."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from helpers import WITHOUT_READ_OVERRIDE
from helpers import run_cli as run
from helpers import sample_photo
from lookalike.api import Index

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def indexed(photo_dir, tmp_path_factory):
    ix = tmp_path_factory.mktemp("ix") / "index"
    report = json.loads(run("index", photo_dir, "--index", ix, "--json").stdout)
    return ix, report


def test_version_is_the_installed_distribution_version():
    from importlib.metadata import version

    assert run("--version").stdout == f"lookalike {version('lookalike')}\n"


def test_index_json_shape(indexed, photo_dir):
    _, report = indexed
    assert set(report) == {"indexed", "removed", "unchanged", "skipped", "total", "seconds", "images_per_second",
                           "paths", "ignored"}
    n = len(os.listdir(photo_dir))
    assert report["indexed"] == report["total"] == n and report["skipped"] == []


def test_edited_copies_rank_above_unrelated_photos(indexed, photo_dir):
    ix, _ = indexed
    for name in ("chelsea", "coffee", "astronaut"):
        out = json.loads(run("query", photo_dir / f"{name}.jpg", "-k", "3", "--index", ix, "--json").stdout)
        assert set(out) == {"query", "mode", "metric", "results"}
        names = [os.path.basename(r["path"]) for r in out["results"]]
        assert names[0] == f"{name}.jpg" and out["results"][0]["distance"] == 0.0
        assert sorted(names[1:]) == sorted([f"{name}_crop.png", f"{name}_flip.jpg"])
        excl = json.loads(run("query", photo_dir / f"{name}.jpg", "-k", "1", "--exclude-self", "--index", ix,
                              "--json").stdout)
        assert os.path.basename(excl["results"][0]["path"]).startswith(f"{name}_")


def test_query_of_image_outside_the_index(indexed, tmp_path):
    ix, _ = indexed
    img = sample_photo("chelsea").rotate(8).resize((300, 250))
    img.save(tmp_path / "new cat.webp")
    out = json.loads(run("query", tmp_path / "new cat.webp", "-k", "3", "--metric", "l2", "--index", ix, "--json").stdout)
    assert all(os.path.basename(r["path"]).startswith("chelsea") for r in out["results"])
    with Index.open(ix) as idx:  # the Euclidean distances to the stored vectors, worked out here
        query, _ = idx.embed(tmp_path / "new cat.webp")
        ids, vectors = idx.vectors()
        distances = np.linalg.norm(np.asarray(vectors, np.float64) - query, axis=1)
        expected = [(p, d) for d, p in sorted(zip(distances, idx.collection.store.paths(ids)))[:3]]
    assert out["metric"] == "l2"
    assert [r["path"] for r in out["results"]] == [p for p, _ in expected]
    np.testing.assert_allclose([r["distance"] for r in out["results"]], [d for _, d in expected], rtol=1e-5)
    assert expected[0][1] > 1  # a new picture, far from every stored one


def test_farthest_descending_random_reproducible(indexed, photo_dir):
    ix, _ = indexed
    q = photo_dir / "coffee.jpg"
    far = json.loads(run("query", q, "--mode", "farthest", "-k", "5", "--index", ix, "--json").stdout)["results"]
    d = [r["distance"] for r in far]
    assert d == sorted(d, reverse=True) and "coffee" not in far[0]["path"]
    near = json.loads(run("query", q, "-k", "100", "--index", ix, "--json").stdout)["results"]
    assert far[0]["distance"] == max(r["distance"] for r in near)
    r1 = run("query", q, "--mode", "random", "-k", "6", "--seed", "1", "--index", ix, "--json").stdout
    r2 = run("query", q, "--mode", "random", "-k", "6", "--seed", "1", "--index", ix, "--json").stdout
    r3 = run("query", q, "--mode", "random", "-k", "6", "--seed", "2", "--index", ix, "--json").stdout
    paths = [r["path"] for r in json.loads(r1)["results"]]
    assert r1 == r2 and r1 != r3 and len(set(paths)) == 6


def test_several_queries_give_a_list_and_show_writes_a_figure(indexed, photo_dir, tmp_path):
    ix, _ = indexed
    out = json.loads(run("query", photo_dir / "coffee.jpg", photo_dir / "rocket.jpg", "-k", "2", "--index", ix,
                         "--json", "--montage", tmp_path / "m.png").stdout)
    assert [o["query"] for o in out] == [str(photo_dir / "coffee.jpg"), str(photo_dir / "rocket.jpg")]
    assert Image.open(tmp_path / "m.png").size[0] > 300
    run("show", photo_dir / "coffee.jpg", "-n", "3", "--out", tmp_path / "views.png", "--index", ix)
    w, h = Image.open(tmp_path / "views.png").size
    assert w > 500 and h > 400
    table = run("query", photo_dir / "coffee.jpg", "-k", "2", "--index", ix).stdout
    assert "coffee_flip.jpg" in table and "distance" in table


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


@pytest.mark.parametrize("args, code, message", [
    (["query", "{photo}", "--index", "{missing}"], 1, "no index"),
    (["query", "{nothing}", "--index", "{ix}"], 1, "cannot read file"),
    (["query", "{photo}", "--mode", "sideways", "--index", "{ix}"], 2, "sideways"),
    (["query", "{photo}", "-k", "0", "--index", "{ix}"], 2, "Invalid value for '-k'"),
    (["index", "{nothing}", "--index", "{ix}"], 1, "not a directory"),
    (["index", "{dir}", "--index", "{ix}", "--model", "efficientnet-lite1", "--layer", "nope"], 1, "layer"),
    (["index", "{dir}", "--index", "{ix}", "--model", "no-such-model"], 1, "unknown model"),
])
def test_errors_are_one_line_without_traceback(indexed, photo_dir, tmp_path, args, code, message):
    ix, _ = indexed
    fill = {"photo": photo_dir / "coffee.jpg", "missing": tmp_path / "none", "ix": ix,
            "nothing": tmp_path / "nothing.jpg", "dir": photo_dir}
    proc = run(*[a.format(**fill) for a in args], check=False)
    assert proc.returncode == code
    assert message in proc.stderr and "Traceback" not in proc.stderr
    if code == 1:
        assert len(proc.stderr.strip().splitlines()) == 1


def test_other_model_on_existing_index_is_refused(indexed, photo_dir):
    ix, _ = indexed
    proc = run("index", photo_dir, "--index", ix, "--layer", "blocks", check=False)
    assert proc.returncode == 1 and "built with model efficientnet-lite0" in proc.stderr


def test_query_path_does_not_import_torch(indexed, photo_dir, tmp_path):
    ix, _ = indexed
    sample_photo("coffee").rotate(3).save(tmp_path / "q.jpg")
    code = ("import sys; from lookalike.api import Index; "
            f"idx = Index.open({str(ix)!r}); idx.query({str(tmp_path / 'q.jpg')!r}, k=2); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    traced = subprocess.run([sys.executable, "-X", "importtime", "-m", "lookalike", "query", tmp_path / "q.jpg",
                             "--index", ix, "--json"], capture_output=True, text=True, timeout=120)
    assert traced.returncode == 0 and json.loads(traced.stdout)["results"]
    assert " torch" not in traced.stderr and "onnxruntime" in traced.stderr


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


def test_ann_settings_from_the_command_line(photo_dir, tmp_path):
    ix = tmp_path / "ix"
    run("index", photo_dir, "--index", ix, "--ann", "hnsw", "--quiet")
    check = json.loads(run("ann", "check", "--queries", "10", "--index", ix, "--json").stdout)
    assert check["kind"] == "hnsw" and check["recall@10"] == 1.0
    q = photo_dir / "coffee.jpg"
    approx = json.loads(run("query", q, "-k", "4", "--index", ix, "--json").stdout)
    exact = json.loads(run("query", q, "-k", "4", "--exact", "--index", ix, "--json").stdout)
    assert approx == exact
    assert "exact" in run("ann", "build", "--kind", "exact", "--index", ix).stdout
    proc = run("ann", "check", "--index", ix, check=False)
    assert proc.returncode == 1 and "uses exact search" in proc.stderr
    assert run("index", photo_dir, "--index", ix, "--ann", "lsh", check=False).returncode == 2
