"""``lookalike index``, ``embed``, ``ingest`` and ``models`` (cli/indexing.py) in-process with the tiny model:
the one line each prints, --json, --verbose's lists, the options reaching the indexer, shards made
and added, and the one-line refusals. The commands as subprocesses are tests/e2e/test_index_cli.py
and test_embed_cli.py; Milvus itself is tests/e2e/test_collection_cli.py."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from helpers import sample_photo, stand_in_index, tiny_model
from lookalike import api
from lookalike.api import Index
from lookalike.cli import app, indexing
from lookalike.images import DEFAULT_MAX_PIXELS
from lookalike.index.indexer import BATCH

TIMING = r"\(\d+\.\d s(, \d+\.\d img/s)?\)"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def photos(tmp_path):
    """A folder of four small photos and a notes file, and the tiny model."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket", "horse"):
        sample_photo(name).resize((48, 40)).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder, tiny_model(tmp_path / "model")


def test_index_says_what_it_did_in_one_line_and_lists_paths_with_verbose(photos, tmp_path):
    folder, model = photos
    ix = tmp_path / "ix"
    first = run("index", folder, "--index", ix, "--model", model, "-v")
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert lines[:4] == [f"added {folder / n}.png" for n in ("chelsea", "coffee", "horse", "rocket")]
    assert re.fullmatch(rf"indexed 4, removed 0, unchanged 0, skipped 0, ignored 1 other file \(1 \.txt\); 4 images "
                        rf"in {re.escape(str(ix))} {TIMING}", lines[4]), lines[4]
    assert len(lines) == 5 and first.stderr == ""
    sample_photo("camera").resize((48, 40)).save(folder / "coffee.png")  # new content under an indexed name
    (folder / "rocket.png").unlink()
    (folder / "broken.png").write_bytes(b"not a picture")
    second = run("index", folder, "--index", ix, "--model", model, "-v")
    assert second.exit_code == 0, second.output
    lines = second.stdout.splitlines()
    assert lines[:2] == [f"changed {folder / 'coffee.png'}", f"removed {folder / 'rocket.png'}"]
    assert lines[2].startswith("indexed 1, removed 1, unchanged 2, skipped 1, ignored 1 other file (1 .txt); "
                               f"3 images in {ix} (") and len(lines) == 3
    assert second.stderr.startswith(f"skipped {folder / 'broken.png'}: ") and second.stderr.count("\n") == 1
    quiet = run("index", folder, "--index", ix, "--model", model)
    assert quiet.stdout.startswith("indexed 0, removed 0, unchanged 3, skipped 1,") and quiet.stdout.count("\n") == 1
    assert re.search(rf"; 3 images in {re.escape(str(ix))} \(\d+\.\d s\)\n$", quiet.stdout)  # no rate: none embedded


def test_index_json_is_the_report_and_nothing_else(photos, tmp_path):
    folder, model = photos
    result = run("index", folder, "--index", tmp_path / "ix", "--model", model, "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert (got["indexed"], got["removed"], got["unchanged"], got["total"], got["skipped"]) == (4, 0, 0, 4, [])
    assert got["paths"]["added"] == [f"{folder / n}.png" for n in ("chelsea", "coffee", "horse", "rocket")]
    assert got["ignored"] == {".txt": 1} and result.stderr == ""


def test_index_passes_its_options_on_and_sets_the_approximate_index(photos, tmp_path, monkeypatch):
    folder, model = photos
    asked = []
    real = Index.index

    def spy(self, folder, batch_size, workers, max_pixels, on_plan, on_progress, follow_links):
        asked.append((batch_size, workers, max_pixels, follow_links))
        return real(self, folder, batch_size, workers, max_pixels, on_plan=on_plan, on_progress=on_progress,
                    follow_links=follow_links)

    monkeypatch.setattr(Index, "index", spy)
    opened = []
    real_open = Index.open.__func__
    monkeypatch.setattr(Index, "open", classmethod(lambda cls, *a, **kw: opened.append((a, kw)) or real_open(cls, *a, **kw)))
    ix = tmp_path / "ix"
    result = run("index", folder, "--index", ix, "--model", model, "--batch", 3, "--workers", 5, "--max-pixels", 1000,
                 "--follow-links", "--ann", "hnsw", "--threads", 1, "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    assert asked == [(3, 5, 1000, True)]
    assert opened[-1] == ((ix, str(model), None), {"create": True, "rebuild": False, "threads": 1, "device": "cpu",
                                                   "weights": None})
    assert result.stdout.startswith("indexed 0, removed 0, unchanged 0, skipped 4")  # 1,920 pixels each: over 1,000
    with Index.open(ix) as idx:
        assert idx.index_type == "hnsw"
    nothing = run("query", folder / "chelsea.png", "--index", ix, "--format", "paths")  # an empty HNSW index
    assert nothing.exit_code == 0 and nothing.stdout == "", nothing.output
    assert run("index", folder, "--index", ix, "--model", model, "-q").exit_code == 0
    assert asked[-1] == (BATCH, 2, DEFAULT_MAX_PIXELS, False)
    assert opened[-1][1] == {"create": True, "rebuild": False, "threads": None, "device": "auto", "weights": None}
    with Index.open(ix) as idx:
        assert idx.index_type == "hnsw" and len(idx) == 4  # the setting kept without --ann


def test_index_rebuild_starts_again_and_a_link_out_of_the_folder_is_followed_only_when_asked(photos, tmp_path):
    folder, model = photos
    outside = tmp_path / "outside.png"
    sample_photo("camera").resize((48, 40)).save(outside)
    os.symlink(outside, folder / "link.png")
    ix = tmp_path / "ix"
    plain = run("index", folder, "--index", ix, "--model", model, "--json")
    assert json.loads(plain.stdout)["indexed"] == 4
    (folder / "horse.png").unlink()
    shutil.copy(folder / "chelsea.png", tmp_path / "keep.png")
    rebuilt = run("index", folder, "--index", ix, "--model", model, "--rebuild", "--follow-links", "--json")
    got = json.loads(rebuilt.stdout)
    assert (got["indexed"], got["removed"], got["total"]) == (4, 0, 4)  # anew: nothing to remove
    assert f"{folder / 'link.png'}" in got["paths"]["added"]


def test_index_refuses_no_folder_or_both_and_an_empty_folder_for_a_new_index(photos, tmp_path):
    folder, model = photos
    for args in ((), (folder, "--from", tmp_path / "shards")):
        result = run("index", *args, "--index", tmp_path / "ix", "--model", model)
        assert result.exit_code == 1 and result.stderr == "error: give a FOLDER or --from SHARDS (one of them)\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("index", empty, "--index", tmp_path / "ix", "--model", model)
    assert result.exit_code == 1 and result.stderr == f"error: no images under {empty}; no index created\n"
    assert not (tmp_path / "ix").exists()


def test_embed_writes_shards_that_index_adds_with_the_shards_model(photos, tmp_path):
    folder, model = photos
    shards = tmp_path / "shards"
    made = run("embed", folder, "--out", shards, "--model", model, "--workers", 1)
    assert made.exit_code == 0, made.output
    assert re.fullmatch(rf"embedded 4, unchanged 0, skipped 0; 1 shard written to {re.escape(str(shards))} "
                        rf"{TIMING[:-2]}, local\)\n", made.stdout), made.stdout
    (folder / "horse.png").unlink()
    again = run("embed", folder, "--out", shards, "--model", model, "--json")
    got = json.loads(again.stdout)
    assert (got["embedded"], got["unchanged"], got["gone"]) == (0, 3, [str(folder / "horse.png")])
    said = run("embed", folder, "--out", shards, "--model", model)
    assert said.stderr == (f"note: 1 file the shards hold are no longer under {folder} (shards only add: they stay until "
                           "`lookalike index FOLDER`, or embed into a fresh --out; --json lists them)\n")
    ix = tmp_path / "ix"
    added = run("index", "--from", shards, "--index", ix, "--model", model, "--json")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["indexed"] == 4
    with Index.open(ix) as idx:
        assert idx.spec.name == "tiny-0" and sorted(idx.paths(idx.members()[0])) == [
            str(folder / f"{n}.png") for n in ("chelsea", "coffee", "horse", "rocket")]
    missing = run("embed", tmp_path / "nowhere", "--out", shards, "--model", model)
    assert missing.exit_code == 1 and missing.stderr == f"error: no such file or folder: {tmp_path / 'nowhere'}\n"
    empty = tmp_path / "no-shards"
    empty.mkdir()
    nothing = run("index", "--from", empty, "--index", tmp_path / "ix2")
    assert nothing.exit_code == 1 and nothing.stderr == f"error: no shards in {empty}\n"


def test_the_shards_model_and_layer_are_used_unless_others_are_given(tmp_path):
    class Held:
        location = "s3://b/shards"

        def model(self):
            return {"name": "efficientnet-lite1", "layer": "pool"}

    new = tmp_path / "new"
    assert indexing._shards_model(Held(), None, None, new, False) == ("efficientnet-lite1", "pool")
    assert indexing._shards_model(Held(), "other", None, new, False) == ("other", None)  # its own default layer
    assert indexing._shards_model(Held(), None, "blocks", new, False) == ("efficientnet-lite1", "blocks")
    stand_in_index(tmp_path / "old").close()
    # an existing index: its own model, which the shards must match
    assert indexing._shards_model(Held(), None, "blocks", tmp_path / "old", False) == (None, "blocks")
    assert indexing._shards_model(Held(), None, None, tmp_path / "old", True) == ("efficientnet-lite1", "pool")


def test_shards_of_a_model_directory_need_it_named_for_a_new_index(photos, tmp_path):
    folder, model = photos
    shards = tmp_path / "shards"
    assert run("embed", folder, "--out", shards, "--model", model, "-q").exit_code == 0
    refused = run("index", "--from", shards, "--index", tmp_path / "ix")
    assert refused.exit_code == 1 and refused.stderr == (
        f"error: the shards in {shards} hold vectors of tiny-0, which is not a registry model: give its model "
        "directory or .onnx file with --model\n")
    assert not (tmp_path / "ix").exists()
    assert run("index", folder, "--index", tmp_path / "ix", "--model", model, "-q").exit_code == 0
    (folder / "horse.png").rename(tmp_path / "horse.png")
    again = run("index", "--from", shards, "--index", tmp_path / "ix", "--json")  # the index's own model
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["unchanged"] == 4
    updated = run("index", folder, "--index", tmp_path / "ix", "--json")
    assert updated.exit_code == 0, updated.output
    assert json.loads(updated.stdout)["removed"] == 1


def test_a_missing_cluster_module_is_named_with_the_extra_to_install(photos, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("ray", "pymilvus") else real(name, *a))
    folder, model = photos
    result = run("embed", folder, "--out", tmp_path / "s", "--engine", "ray")
    assert result.exit_code == 1 and result.stderr == "error: this needs ray: pip install 'lookalike[cluster]'\n"
    result = run("ingest", tmp_path / "s", "--uri", "http://m:19530", "--engine", "ray")
    assert result.stderr == "error: this needs pymilvus, ray: pip install 'lookalike[cluster]'\n"
    result = run("ingest", tmp_path / "s", "--uri", "http://m:19530")  # local: no ray needed
    assert result.stderr == "error: this needs pymilvus: pip install 'lookalike[cluster]'\n"
    assert run("embed", folder, "--out", tmp_path / "s", "--model", model, "-q").exit_code == 0  # local: no ray needed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    for command in (["ingest", tmp_path / "s", "--uri", "u.db"], ["index", "--from", tmp_path / "s"],
                    ["embed", folder, "--out", tmp_path / "s"]):
        result = run(*command)
        assert result.exit_code == 1 and result.stderr == "error: this needs pyarrow: pip install 'lookalike[cluster]'\n"


def test_ingest_passes_its_options_on_and_says_what_it_wrote(monkeypatch):
    from lookalike.cluster import ingest
    from lookalike.cluster.ingest import IngestReport

    asked = []

    def stand_in(shards, uri, collection, engine, workers, address, delete_gone, rebuild, on_plan, on_progress, verbose):
        asked.append((shards, uri, collection, engine, workers, address, delete_gone, rebuild, verbose))
        on_plan(3), on_progress(3)
        return IngestReport("ray", workers=2, shards=3, written=5, unchanged=1, removed=2,
                            skipped=[("/p/x.png", "not an image")], gone=4, total=6, seconds=1.26)

    monkeypatch.setattr(ingest, "ingest", lambda *a, **kw: stand_in(*a, **kw))
    result = run("ingest", "/s", "--uri", "http://m:19530", "--collection", "c", "--engine", "ray", "--workers", 2,
                 "--address", "auto", "--delete-gone", "/p", "--rebuild", "-v")
    assert result.exit_code == 0, result.output
    assert asked == [("/s", "http://m:19530", "c", "ray", 2, "auto", "/p", True, True)]
    assert result.stdout == ("written 5, unchanged 1, removed 2, skipped 1, deleted 4 gone from /p; 6 images in collection "
                             "c at http://m:19530 (1.3 s, 3 shards, ray)\n")
    assert result.stderr == "skipped /p/x.png: not an image\n"
    plain = run("ingest", "/s", "--uri", "u.db")
    assert asked[-1] == ("/s", "u.db", "lookalike", "local", None, None, None, False, False)
    assert plain.stdout.startswith("written 5, unchanged 1, removed 2, skipped 1; 6 images in collection lookalike at u.db")
    as_json = json.loads(run("ingest", "/s", "--uri", "u.db", "--json").stdout)
    assert as_json["written"] == 5 and as_json["skipped"] == [{"path": "/p/x.png", "reason": "not an image"}]


def test_models_lists_each_models_layers_and_weights(monkeypatch):
    from lookalike.models import registry

    rows = [{"name": "m1", "dim": 8, "layer": "b", "layers": {"a": 4, "b": 8}, "input_size": 32, "weights": None,
             "source": "made here"},
            {"name": "m2", "dim": 2, "layer": "x", "layers": {"x": 2}, "input_size": 16, "weights": "/w/m2.pth",
             "source": "elsewhere"}]
    asked = []
    monkeypatch.setattr(registry, "catalog", lambda weights: asked.append(weights) or rows)
    monkeypatch.setattr(registry, "download_weights", lambda name: f"/cache/{'long folder/' * 20}{name}.pth")
    result = run("models", "--weights", "/w/f.pth", "--download", "m2")
    assert result.exit_code == 0, result.output
    assert asked == [api.Path("/w/f.pth")]
    assert result.stdout == ("m1: 8-d, 32px input; layers a (4-d), b (8-d) default\n    weights: missing\n    source: made here\n"
                             "m2: 2-d, 16px input; layers x (2-d) default\n    weights: /w/m2.pth\n    source: elsewhere\n")
    assert result.stderr == f"m2 weights: /cache/{'long folder/' * 20}m2.pth\n"  # one line, however long
    got = run("models", "--json")
    assert json.loads(got.stdout) == rows and got.stderr == "" and asked[-1] is None


@pytest.fixture
def bars(monkeypatch):
    """The progress bars the commands make (each with whether it was asked to be quiet), kept for reading."""
    made = []
    real = indexing.progress_bar

    def keep(quiet, *what):
        bar = real(quiet, *what)
        made.append((quiet, what, bar))
        return bar

    monkeypatch.setattr(indexing, "progress_bar", keep)
    return made


def test_the_progress_bar_counts_the_files_planned_and_done_and_their_rate(photos, tmp_path, bars):
    folder, model = photos
    assert run("index", folder, "--index", tmp_path / "ix", "--model", model).exit_code == 0
    quiet, what, bar = bars[-1]
    [task] = bar.tasks
    assert quiet is False and what == () and (task.description, task.total, task.completed) == ("embed", 4, 4)
    assert re.fullmatch(r"\d+\.\d img/s", task.fields["rate"])
    assert run("index", folder, "--index", tmp_path / "ix", "--model", model, "-q").exit_code == 0
    assert bars[-1][0] is True and (bars[-1][2].tasks[0].total, bars[-1][2].tasks[0].completed) == (0, 0)
    assert run("index", folder, "--index", tmp_path / "ix", "--model", model, "--json").exit_code == 0
    assert bars[-1][0] is True
    assert run("embed", folder, "--out", tmp_path / "s", "--model", model).exit_code == 0
    quiet, what, bar = bars[-1]
    assert quiet is False and (bar.tasks[0].description, bar.tasks[0].total, bar.tasks[0].completed) == ("embed", 4, 4)
    assert run("embed", folder, "--out", tmp_path / "s", "--model", model, "--json").exit_code == 0
    assert bars[-1][0] is True


def test_the_ingest_bar_says_writing_and_counts_shards(monkeypatch, bars):
    from lookalike.cluster import ingest
    from lookalike.cluster.ingest import IngestReport

    def stand_in(*args, on_plan, on_progress, **options):
        bar = bars[-1][2]
        assert bar.tasks[0].total is None  # not a count until the plan
        on_plan(3), on_progress(2), on_progress(1)
        shown = io.StringIO()
        Console(file=shown, width=100, color_system=None).print(bar.make_tasks_table(bar.tasks))
        assert re.fullmatch(r"writing ━+ 3/3 +0:00:00\n", shown.getvalue()), shown.getvalue()  # no rate column text
        return IngestReport("local")

    monkeypatch.setattr(ingest, "ingest", stand_in)
    assert run("ingest", "/s", "--uri", "u.db").exit_code == 0
    quiet, what, bar = bars[-1]
    assert (quiet, what) == (False, ("writing",))
    assert (bar.tasks[0].description, bar.tasks[0].total, bar.tasks[0].completed) == ("ingest", 3, 3)
    assert run("ingest", "/s", "--uri", "u.db", "-q").exit_code == 0 and bars[-1][0] is True


def test_embed_hands_every_option_to_the_embedding_run_and_counts_on_its_bar(monkeypatch, bars, tmp_path):
    from lookalike.cluster import embed
    from lookalike.cluster.embed import EmbedReport

    asked = {}

    def spec(*args):
        asked["spec"] = args
        return "the spec"

    def stand_in(*args, on_plan, on_progress, **options):
        asked["run"] = args, options
        bar = bars[-1][2]
        assert bar.tasks[0].total is None and bar.tasks[0].fields == {"rate": ""}  # not a count until the plan
        on_plan(3), on_progress(2), on_progress(1)
        return EmbedReport("ray", embedded=3, shards=1, seconds=1.5)

    monkeypatch.setattr(embed, "model_spec", spec)
    monkeypatch.setattr(embed, "embed", stand_in)
    source = str(tmp_path)
    result = run("embed", source, "--out", "/s", "--engine", "ray", "--address", "ray://h:10001", "--workers", 3,
                 "--gpus-per-worker", 0.5, "--model", "m", "--layer", "blocks", "--weights", "/w.pth", "--batch", 7,
                 "--device", "cuda", "--max-pixels", 1000, "-v")
    assert result.exit_code == 0, result.output
    assert asked["spec"] == ("m", "blocks", Path("/w.pth"))
    assert asked["run"] == ((source, "/s", "the spec", "ray", "ray://h:10001", 3, 0.5, 7),
                            {"max_pixels": 1000, "device": "cuda", "verbose": True})
    assert (bars[-1][2].tasks[0].total, bars[-1][2].tasks[0].completed) == (3, 3)
    assert result.stdout == "embedded 3, unchanged 0, skipped 0; 1 shard written to /s (1.5 s, 2.0 img/s, ray)\n"
    run("embed", source, "--out", "/s")
    assert asked["spec"] == (None, None, None)
    assert asked["run"] == ((source, "/s", "the spec", "local", None, None, 0.0, BATCH),
                            {"max_pixels": DEFAULT_MAX_PIXELS, "device": "cpu", "verbose": False})


def test_index_hands_its_options_to_the_folder_check_the_index_and_the_shards_model(photos, tmp_path, monkeypatch):
    folder, model = photos
    asked = []
    for name in ("check_images", "_shards_model"):
        real = getattr(indexing, name)
        monkeypatch.setattr(indexing, name, lambda *a, real=real, name=name: asked.append((name, a)) or real(*a))
    opened = Index.open

    def open_index(*args, **options):
        asked.append(("open", args, options))
        return opened(*args, **{**options, "weights": None})  # --weights is the FID model's: seen, not used

    monkeypatch.setattr(indexing.Index, "open", open_index)
    ix = tmp_path / "ix"
    made = run("index", folder, "--index", ix, "--model", model, "--layer", "output", "--weights", "/w.pth",
               "--rebuild", "--follow-links", "-v", "--threads", 1)
    assert made.exit_code == 0, made.output
    assert asked[0] == ("check_images", (folder, ix, True, True, True))
    assert asked[1] == ("open", (ix, str(model), "output"), {"create": True, "rebuild": True, "threads": 1,
                                                             "device": "auto", "weights": Path("/w.pth")})
    shards = tmp_path / "shards"
    assert run("embed", folder, "--out", shards, "--model", model, "-q").exit_code == 0
    asked.clear()
    assert run("index", "--from", shards, "--index", ix, "--layer", "output", "--rebuild", "--model", model,
               "-q").exit_code == 0
    assert asked[0][0] == "_shards_model" and asked[0][1][1:] == (str(model), "output", ix, True)


def test_index_from_shards_counts_on_its_bar(photos, tmp_path, monkeypatch, bars):
    from lookalike.cluster import from_shards
    from lookalike.index.indexer import IndexReport

    folder, model = photos
    shards = tmp_path / "shards"
    assert run("embed", folder, "--out", shards, "--model", model, "-q").exit_code == 0

    def stand_in(index, location, on_plan, on_progress):
        bar = bars[-1][2]
        assert bar.tasks[0].total is None and bar.tasks[0].fields == {"rate": ""}
        on_plan(4), on_progress(3), on_progress(1)
        return IndexReport(indexed=4, total=4)

    monkeypatch.setattr(from_shards, "index_shards", stand_in)
    assert run("index", "--from", shards, "--index", tmp_path / "ix", "--model", model).exit_code == 0
    task = bars[-1][2].tasks[0]
    assert (task.total, task.completed) == (4, 4) and re.fullmatch(r"\d+\.\d img/s", task.fields["rate"])


# what a terminal shows: the bar's rate and the last line's, at a clock the test moves; the note's label

def test_the_bar_and_the_last_line_give_the_rate_as_images_over_seconds(photos, tmp_path, monkeypatch, bars):
    from lookalike.cli import common
    from lookalike.index.indexer import IndexReport

    folder, model = photos
    clock = [100.0]
    monkeypatch.setattr(common, "err", Console(file=io.StringIO(), force_terminal=True, color_system=None, width=100,
                                               get_time=lambda: clock[0]))
    drawn = []

    def draw():
        shown = io.StringIO()
        Console(file=shown, width=100, color_system=None).print(bars[-1][2].make_tasks_table(bars[-1][2].tasks))
        drawn.append(shown.getvalue())

    def stand_in(self, folder, *args, on_plan, on_progress, **options):
        on_plan(10)
        on_progress(4)  # at once: no time has passed, so no rate yet
        draw()
        clock[0] = 102.0
        on_progress(1)  # 5 images in 2 s
        draw()
        return IndexReport(indexed=5, total=5, seconds=2.0)

    monkeypatch.setattr(Index, "index", stand_in)
    ix = tmp_path / "ix"
    result = run("index", folder, "--index", ix, "--model", model)
    assert result.exit_code == 0, result.output
    # 4 then 5 of 10 over 40 cells (16, then 20, drawn); the count as wide as "10/10"; 1 image in the last
    # 2 s leaves 5 for 10 s
    assert drawn == [f"embedding {'━' * 16}{' ' * 24}  4/10  -:--:--\n",
                     f"embedding {'━' * 20}{' ' * 20}  5/10 2.5 img/s 0:00:10\n"]
    assert result.stdout == f"indexed 5, removed 0, unchanged 0, skipped 0; 5 images in {ix} (2.0 s, 2.5 img/s)\n"


def test_on_a_terminal_embeds_note_on_files_gone_is_labelled_in_bold(monkeypatch, tmp_path):
    from lookalike.cli import common
    from lookalike.cluster import embed
    from lookalike.cluster.embed import EmbedReport

    out = io.StringIO()
    monkeypatch.setattr(common, "err", Console(file=out, force_terminal=True, color_system="standard", width=80))
    monkeypatch.setattr(embed, "model_spec", lambda *args: "the spec")
    monkeypatch.setattr(embed, "embed", lambda *args, **options: EmbedReport("local", embedded=1, shards=1,
                                                                             gone=["/a.jpg", "/b.jpg"], seconds=1.0))
    result = run("embed", tmp_path, "--out", "/s", "-q")
    assert result.exit_code == 0, result.output
    assert out.getvalue() == (f"\x1b[1mnote:\x1b[0m 2 files the shards hold are no longer under {tmp_path} (shards only "
                              "add: they stay until `lookalike index FOLDER`, or embed into a fresh --out; --json lists "
                              "them)\n")
