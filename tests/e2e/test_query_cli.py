"""``lookalike query`` as a user runs it: neighbours of indexed and new images, modes and seeds, exact
paths in every output format, bad queries named among good ones, and no torch on the way."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import run_cli as run
from helpers import sample_photo
from lookalike.api import Index


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


def test_paths_print_exactly_in_table_tsv_paths_and_json(odd):
    root, ix = odd
    q = root / "chelsea [1].jpg"
    expected = json.loads(run("query", q, "-k", "4", "--index", ix, "--json").stdout)
    paths = [r["path"] for r in expected["results"]]
    assert expected["query"] == str(q) and paths[0] == str(q)
    assert set(paths) == {str(p) for p in root.rglob("*.jpg")}

    tsv = run("query", q, "-k", "4", "--index", ix, "--format", "tsv").stdout
    rows = list(csv.reader(io.StringIO(tsv), delimiter="\t"))
    assert rows[0] == ["rank", "distance", "path"]
    assert [r[2] for r in rows[1:]] == paths and [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4]
    assert [round(float(r[1]), 6) for r in rows[1:]] == [r["distance"] for r in expected["results"]]

    assert run("query", q, "-k", "4", "--index", ix, "--format", "paths").stdout.splitlines() == paths

    # The table in a pipe: every path whole on one line, never wrapped at 80 columns nor read as markup.
    table = run("query", q, "-k", "4", "--index", ix, "--format", "table").stdout
    lines = table.splitlines()
    assert lines[0].strip() == f"nearest to {q} (cosine)"
    for p in paths:
        assert sum(p in line for line in lines[1:]) == 1, p


def test_tsv_and_paths_refuse_names_that_would_break_their_lines(photo_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    tab, newline = folder / "tab\there.jpg", folder / "line\nbreak.jpg"
    shutil.copy(photo_dir / "chelsea.jpg", tab)
    shutil.copy(photo_dir / "coffee.jpg", newline)
    ix = tmp_path / "ix"
    run("index", folder, "--index", ix, "--quiet")
    for fmt, k, broken in (("tsv", 1, tab), ("paths", 2, newline)):
        proc = run("query", tab, "-k", k, "--index", ix, "--format", fmt, check=False)
        what = "a tab or line break" if fmt == "tsv" else "a line break"
        assert proc.returncode == 1 and proc.stdout == "", fmt
        assert proc.stderr == (f"error: a file name holds {what} ({str(broken)!r}): {fmt} output would be "
                               "ambiguous; use --json\n")
    assert run("query", tab, "-k", "1", "--index", ix, "--format", "paths").stdout == f"{tab}\n"  # a tab is no break here
    found = json.loads(run("query", tab, "-k", "2", "--index", ix, "--json").stdout)
    assert [r["path"] for r in found["results"]] == [str(tab), str(newline)]


def test_table_only_on_a_terminal_by_default(odd):
    root, ix = odd
    piped = run("query", root / "coffee [1].jpg", "-k", "2", "--index", ix).stdout
    assert piped.splitlines()[0] == "rank\tdistance\tpath"  # a pipe gets TSV unless --format says otherwise
    assert "┃" not in piped


def test_bad_queries_among_good_ones_are_named_and_the_good_ones_answered(odd, tmp_path):
    root, ix = odd
    notes = tmp_path / "notes [1].txt"
    notes.write_text("not an image")
    missing = tmp_path / "gone [x].jpg"
    good = [root / "chelsea [1].jpg", root / "rocket [1].jpg"]
    proc = run("query", good[0], notes, missing, good[1], "-k", "1", "--index", ix, check=False)
    assert proc.returncode == 1
    errors = proc.stderr.splitlines()
    assert errors[0] == f"error: {notes}: not an image (empty or unknown format)"
    assert errors[1] == f"error: {missing}: cannot read file: No such file or directory"
    assert errors[2] == "error: 2 of 4 queries failed"
    rows = list(csv.reader(io.StringIO(proc.stdout), delimiter="\t"))
    assert rows[0] == ["query", "rank", "distance", "path"]
    assert [(r[0], r[3]) for r in rows[1:]] == [(str(g), str(g)) for g in good]

    proc = run("query", good[0], notes, missing, good[1], "-k", "1", "--index", ix, "--json", check=False)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert [o["query"] for o in out] == [str(good[0]), str(notes), str(missing), str(good[1])]
    assert [o.get("error") for o in out] == [None, "not an image (empty or unknown format)",
                                             "cannot read file: No such file or directory", None]
    assert out[0]["results"][0]["path"] == str(good[0]) and "results" not in out[1]

    single = run("query", missing, "--index", ix, "--json", check=False)
    assert single.returncode == 1 and json.loads(single.stdout) == {
        "query": str(missing), "error": "cannot read file: No such file or directory"}


def test_random_draw_prints_its_seed_and_repeats_with_it(odd):
    root, ix = odd
    q = root / "coffee [1].jpg"
    first = run("query", q, "--mode", "random", "-k", "3", "--index", ix, "--format", "paths")
    (line,) = first.stderr.splitlines()
    assert line.startswith("seed: ")
    seed = int(line.split()[1])
    again = run("query", q, "--mode", "random", "-k", "3", "--seed", seed, "--index", ix, "--format", "paths")
    assert again.stdout == first.stdout and again.stderr.splitlines() == [line]
    out = json.loads(run("query", q, "--mode", "random", "-k", "3", "--seed", seed, "--index", ix, "--json").stdout)
    assert out["seed"] == seed and [r["path"] for r in out["results"]] == first.stdout.splitlines()
    unseeded = run("query", q, "--mode", "random", "-k", "3", "--index", ix, "--json")
    assert unseeded.stderr == "" and isinstance(json.loads(unseeded.stdout)["seed"], int)
    assert "seed" not in json.loads(run("query", q, "-k", "1", "--index", ix, "--json").stdout)
