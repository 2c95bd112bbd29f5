"""``lookalike dedup`` (cli/dedup.py) in-process with the tiny model and a cosine threshold (presets are
calibrated for the registry models only): the groups it prints and lists, --json with the indexing
report, the files it writes, a FOLDER beside a sibling whose name extends it, what reaches the index,
and its refusals. Grouping itself is tests/unit/dedup; the command as a subprocess, with presets,
tests/e2e/test_dedup_cli.py."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from helpers import sample_photo, tiny_model
from lookalike.cli import app, dedup, present


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def folder_of(root, names, copies=()):
    """``root``, made, holding the sample photos ``names`` as small PNGs, and ``(copy, of)`` byte copies."""
    root.mkdir(parents=True)
    for name in names:
        sample_photo(name).resize((48, 40)).save(root / f"{name}.png")
    for copy, of in copies:
        shutil.copy(root / f"{of}.png", root / copy)
    return root


def test_dedup_of_a_folder_prints_each_group_and_writes_what_could_go(tmp_path):
    model = tiny_model(tmp_path / "m")
    folder = folder_of(tmp_path / "set", ("chelsea", "coffee", "rocket"), [("coffee copy.png", "coffee")])
    (folder / "broken.png").write_bytes(b"not a picture")
    ix = tmp_path / "ix"
    result = run("dedup", folder, "--index", ix, "--model", model, "-t", "0.001", "--to-remove", tmp_path / "go.txt")
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines[0] == "duplicate groups (cosine distance <= 0.001)"
    keep = next(line for line in lines if "keep" in line)
    copy = next(line for line in lines if "copy.png" in line)
    assert str(folder / "coffee.png") in keep and str(folder / "coffee copy.png") in copy and "same bytes" in copy
    assert lines[-1] == "1 exact group (2 files), 0 near groups (0 files) among 4 images; 1 file could go (--to-remove)"
    assert result.stderr == f"skipped {folder / 'broken.png'}: not an image (empty or unknown format)\n"
    assert (tmp_path / "go.txt").read_bytes() == f"{folder / 'coffee copy.png'}\n".encode()
    again = run("dedup", "--index", ix, "-t", "0.001", "--to-remove", tmp_path / "go0", "-0")  # the whole index
    assert again.exit_code == 0 and (tmp_path / "go0").read_bytes() == f"{folder / 'coffee copy.png'}\0".encode()
    assert again.stderr == f"skipped {folder / 'broken.png'}: not an image (empty or unknown format)\n"
    other = folder_of(tmp_path / "other", ("horse", "camera"))
    none = run("dedup", other, "--index", ix, "--model", model, "-t", "0.001")
    assert none.exit_code == 0 and none.stdout == "no duplicates among 2 images (cosine distance <= 0.001)\n"


def test_dedup_json_carries_the_indexing_of_the_folder_and_lists_skipped_files_once(tmp_path):
    model = tiny_model(tmp_path / "m")
    folder = folder_of(tmp_path / "set", ("chelsea", "rocket"), [("rocket 2.png", "rocket")])
    (folder / "broken.png").write_bytes(b"")
    result = run("dedup", folder, "--index", tmp_path / "ix", "--model", model, "-t", "0.001", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["index"]["indexed"] == 3 and got["index"]["paths"]["added"] == sorted(
        str(folder / n) for n in ("chelsea.png", "rocket.png", "rocket 2.png"))
    assert [g["keep"] for g in got["groups"]] == [str(folder / "rocket.png")]
    assert got["to_remove"] == [str(folder / "rocket 2.png")] and got["threshold"] == 0.001 and got["preset"] is None
    assert got["skipped"] == [{"path": str(folder / "broken.png"), "reason": "not an image (empty or unknown format)"}]
    assert result.stderr == ""
    whole = json.loads(run("dedup", "--index", tmp_path / "ix", "-t", "0.001", "--json").stdout)
    assert "index" not in whole and whole["to_remove"] == got["to_remove"]


def test_dedup_of_a_folder_looks_only_in_it_not_in_a_sibling_whose_name_extends_it(tmp_path):
    model = tiny_model(tmp_path / "m")
    ix = tmp_path / "ix"
    sibling = folder_of(tmp_path / "set2", ("horse",), [("horse copy.png", "horse")])
    assert run("index", sibling, "--index", ix, "--model", model, "-q").exit_code == 0
    folder = folder_of(tmp_path / "set", ("chelsea",), [("chelsea copy.png", "chelsea")])
    got = json.loads(run("dedup", folder, "--index", ix, "--model", model, "-t", "0.001", "--json").stdout)
    assert got["n_images"] == 2 and got["to_remove"] == [str(folder / "chelsea copy.png")]
    whole = json.loads(run("dedup", "--index", ix, "-t", "0.001", "--json").stdout)
    assert whole["n_images"] == 4 and sorted(whole["to_remove"]) == [str(folder / "chelsea copy.png"),
                                                                     str(sibling / "horse copy.png")]


def test_dedup_writes_montages_and_a_review_page_of_its_groups(tmp_path, monkeypatch):
    model = tiny_model(tmp_path / "m")
    folder = folder_of(tmp_path / "set", ("chelsea", "coffee"), [("<b>&copy.png", "coffee")])
    drawn = []
    monkeypatch.setattr(present, "dedup_montages", lambda report, out: drawn.append(
        (out, [(g.keep, [d.path for d in g.duplicates]) for g in report.groups])))
    result = run("dedup", folder, "--index", tmp_path / "ix", "--model", model, "-t", "0.001", "-q",
                 "--montage", tmp_path / "montages", "--review", tmp_path / "review.html")
    assert result.exit_code == 0, result.output
    assert drawn == [(tmp_path / "montages", [(str(folder / "coffee.png"), [str(folder / "<b>&copy.png")])])]
    page = (tmp_path / "review.html").read_text()
    assert "&lt;b&gt;&amp;copy.png" in page and "<b>&copy" not in page


def test_dedup_opens_the_index_asked_for_with_its_options_and_refuses_a_folder_with_a_uri(tmp_path, monkeypatch):
    model = tiny_model(tmp_path / "m")
    folder = folder_of(tmp_path / "set", ("chelsea",))
    opened = []
    real = dedup.open_index
    monkeypatch.setattr(dedup, "open_index", lambda *a, **kw: opened.append((a, kw)) or real(*a, **kw))
    assert run("dedup", folder, "--index", tmp_path / "ix", "--model", model, "-t", "0.5", "--threads", 1,
               "--device", "cpu", "-q").exit_code == 0
    assert opened == [((tmp_path / "ix", None, None), {"threads": 1, "device": "cpu", "weights": None,
                                                       "model": str(model), "layer": None, "create": True})]
    assert run("dedup", "--index", tmp_path / "ix", "-t", "0.5").exit_code == 0
    assert opened[-1] == ((tmp_path / "ix", None, None), {"threads": None, "device": "auto", "weights": None,
                                                          "model": None, "layer": None, "create": False})
    refused = run("dedup", folder, "--uri", "http://m:19530", "-t", "0.5")
    assert refused.exit_code == 1 and len(opened) == 2
    assert refused.stderr == "error: a FOLDER is indexed into --index; a --uri collection is filled by `lookalike ingest`\n"
    monkeypatch.setattr(dedup, "open_index", lambda *a, **kw: opened.append((a, kw)) or real(tmp_path / "ix", None, None))
    assert run("dedup", "--uri", "http://m:19530", "--collection", "c", "-t", "0.5", "--model", model,
               "--weights", tmp_path / "w.pth").exit_code == 0
    assert opened[-1] == ((None, "http://m:19530", "c"), {"threads": None, "device": "auto",
                                                          "weights": tmp_path / "w.pth", "model": str(model)})
    from lookalike import dedup as dd

    asked = []
    real_rule = dd.resolve_threshold
    monkeypatch.setattr(dd, "resolve_threshold", lambda value, model: asked.append((value, model)) or
                        real_rule("0.5", model))
    assert run("dedup", "--uri", "http://m:19530", "-t", "shots").exit_code == 0
    assert asked == [("shots", {**asked[0][1], "name": "tiny-0"})]  # the preset, for the collection's model


def test_dedup_of_an_empty_folder_is_refused_for_a_new_index_and_a_warning_for_an_existing_one(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("dedup", tmp_path / "empty", "--index", tmp_path / "ix", "-t", "0.5")
    assert result.exit_code == 1 and result.stderr == f"error: no images under {tmp_path / 'empty'}; no index created\n"
    assert not (tmp_path / "ix").exists()
    model = tiny_model(tmp_path / "m")
    assert run("index", folder_of(tmp_path / "set", ("chelsea",)), "--index", tmp_path / "ix", "--model", model,
               "-q").exit_code == 0
    result = run("dedup", tmp_path / "empty", "--index", tmp_path / "ix", "--model", model, "-t", "0.5")
    assert result.exit_code == 0 and result.stderr == f"warning: no images under {tmp_path / 'empty'}\n"


def test_the_progress_bar_of_indexing_the_folder_counts_its_files(tmp_path, monkeypatch):
    made = []
    real = dedup.progress_bar
    monkeypatch.setattr(dedup, "progress_bar", lambda quiet: made.append((quiet, real(quiet))) or made[-1][1])
    model = tiny_model(tmp_path / "m")
    folder = folder_of(tmp_path / "set", ("chelsea", "coffee", "rocket"))
    assert run("dedup", folder, "--index", tmp_path / "ix", "--model", model, "-t", "0.001").exit_code == 0
    quiet, bar = made[-1]
    assert quiet is False and (bar.tasks[0].description, bar.tasks[0].total, bar.tasks[0].completed) == ("embed", 3, 3)
    import io
    import re

    from rich.console import Console

    shown = io.StringIO()
    Console(file=shown, width=100, color_system=None).print(bar.make_tasks_table(bar.tasks))
    assert re.fullmatch(r"embedding ━+ 3/3 +0:00:00\n", shown.getvalue()), shown.getvalue()  # no rate text
    for flag in ("-q", "--json"):
        assert run("dedup", folder, "--index", tmp_path / "ix", "--model", model, "-t", "0.001", flag).exit_code == 0
        assert made[-1][0] is True
    assert run("dedup", "--index", tmp_path / "ix", "-t", "0.001").exit_code == 0 and len(made) == 3  # no folder: no bar


def test_dedup_follows_links_when_asked_and_reports_the_preset_it_resolved(tmp_path, monkeypatch):
    import os

    from lookalike import dedup as dd

    model = tiny_model(tmp_path / "m")
    folder = folder_of(tmp_path / "set", ("chelsea",))
    folder_of(tmp_path / "out", ("coffee",))
    os.symlink(tmp_path / "out" / "coffee.png", folder / "link.png")
    monkeypatch.setattr(dd, "resolve_threshold", lambda value, model: (dd.Rule(0.001), "near"))
    got = json.loads(run("dedup", folder, "--index", tmp_path / "ix", "--model", model, "--follow-links",
                         "--json").stdout)
    assert str(folder / "link.png") in got["index"]["paths"]["added"] and got["preset"] == "near"


def test_until_the_folder_is_listed_the_bar_counts_against_no_total(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from lookalike.api import Index

    made, drawn = [], []
    real_bar, real_index = dedup.progress_bar, Index.index
    monkeypatch.setattr(dedup, "progress_bar", lambda quiet: made.append(real_bar(quiet)) or made[-1])

    def index(self, *args, **options):
        shown = io.StringIO()
        Console(file=shown, width=100, color_system=None).print(made[-1].make_tasks_table(made[-1].tasks))
        drawn.append(shown.getvalue().rstrip())
        return real_index(self, *args, **options)

    monkeypatch.setattr(Index, "index", index)
    model = tiny_model(tmp_path / "m")
    folder = folder_of(tmp_path / "set", ("chelsea", "coffee"))
    assert run("dedup", folder, "--index", tmp_path / "ix", "--model", model, "-t", "0.001").exit_code == 0
    # an unknown count: the whole bar drawn (rich's pulse, without colour), "0/?" and no time left; not an empty
    # bar at "0/100"
    assert drawn == [f"embedding {'━' * 40} 0/?"]
