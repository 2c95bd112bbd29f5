"""``lookalike map`` (cli/maps.py) over a stand-in index: which files --out accepts, the colouring it
starts with, what --json and the one line on stderr say, and what the picture is drawn with. The
layout itself is map/'s (tests/unit/map); the command end to end is tests/e2e/test_map_cli.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.cli import app, maps
from lookalike.map.cache import Map


class StandIn:
    """What map_command asks of an index: its layout and the paths of ids."""

    def __init__(self, m: Map, paths: dict[int, str]) -> None:
        self.m, self.by_id = m, paths

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def layout(self) -> Map:
        return self.m

    def paths(self, ids) -> list[str]:
        return [self.by_id[int(i)] for i in ids]


def a_map(how: str = "cached", placed: int = 0) -> Map:
    # ids 0, 4, 7 (id 0 is an image like any other); two clusters, the first of two images
    return Map(ids=np.array([0, 4, 7], np.int64), xy=np.array([[0.1234567, 1.0], [0.5, 0.9876543], [0.0, 0.0]], np.float32),
               clusters=np.array([0, 1, 0], np.int32), centres=np.eye(2, 4, dtype=np.float32),
               central=np.array([[7, 0, -1], [4, -1, -1]], np.int64), generation=5, method="pca50+umap15",
               laid_out=3, placed=placed, how=how)


PATHS = {0: "/p/cats/a <b>.jpg", 4: "/p/dogs/d.jpg", 7: "/p/cats/c.jpg"}


@pytest.fixture
def run(monkeypatch):
    """Run ``lookalike map ARGS`` on the stand-in index of ``m`` and ``paths``; a stepped clock (1.2346 s)."""
    def run(args, m=None, paths=PATHS):
        clock = iter([100.0, 101.2346])
        monkeypatch.setattr(maps.time, "perf_counter", lambda: next(clock))
        monkeypatch.setattr(maps.Index, "open", lambda path: StandIn(m or a_map(), paths) if path == Path("ix") else
                            pytest.fail(f"opened {path}, not the --index given"))
        return CliRunner().invoke(app, ["map", "--index", "ix", *map(str, args)])

    return run


def test_json_gives_every_point_folder_and_cluster_with_central_paths(run):
    result = run(["--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got == {
        "count": 3, "generation": 5, "method": "pca50+umap15", "how": "cached", "seconds": 1.235, "color": "folder",
        "out": None,
        "folders": [{"path": "/p/cats", "size": 2}, {"path": "/p/dogs", "size": 1}],
        "clusters": [{"size": 2, "central": ["/p/cats/c.jpg", "/p/cats/a <b>.jpg"]},
                     {"size": 1, "central": ["/p/dogs/d.jpg"]}],
        "points": [{"id": 0, "path": "/p/cats/a <b>.jpg", "x": 0.123457, "y": 1.0, "folder": 0, "cluster": 0},
                   {"id": 4, "path": "/p/dogs/d.jpg", "x": 0.5, "y": 0.987654, "folder": 1, "cluster": 1},
                   {"id": 7, "path": "/p/cats/c.jpg", "x": 0.0, "y": 0.0, "folder": 0, "cluster": 0}]}
    assert result.stderr == ""  # --json alone: nothing but the JSON


@pytest.mark.parametrize("paths, colour", [
    ({0: "/p/a.jpg", 4: "/p/b.jpg", 7: "/p/c.jpg"}, "cluster"),  # one folder: its one colour would say nothing
    ({0: "/p/a.jpg", 4: "/p/b.jpg", 7: "/q/c.jpg"}, "folder"),  # exactly two
])
def test_the_colouring_starts_by_folder_from_two_folders_unless_asked(run, paths, colour):
    assert json.loads(run(["--json"], paths=paths).stdout)["color"] == colour
    other = {"folder": "cluster", "cluster": "folder"}[colour]
    assert json.loads(run(["--json", "--color", other], paths=paths).stdout)["color"] == other


@pytest.mark.parametrize("how, placed, said", [
    ("cached", 0, "from the cache"), ("placed", 2, "2 placed since it was laid out"), ("laid out", 0, "laid out")])
def test_the_line_on_stderr_says_how_the_map_was_had_and_where_it_went(run, tmp_path, how, placed, said):
    out = tmp_path / "m.html"
    result = run(["--out", out], m=a_map(how, placed))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"map of 3 images ({said}, 1.2 s) written to {out}\n" and result.stdout == ""


@pytest.mark.parametrize("name", ["map.html", "map.htm", "MAP.HTML", "Map.Htm"])
def test_a_page_is_written_for_html_in_any_case(run, tmp_path, name):
    result = run(["--out", tmp_path / name])
    assert result.exit_code == 0, result.output
    page = (tmp_path / name).read_text(encoding="utf-8")
    assert page.lower().startswith("<!doctype html>")
    data = json.loads(re.search(r'<script id="map-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert data["color"] == "folder" and data["ids"] == [0, 4, 7]  # two folders: coloured by folder


@pytest.mark.parametrize("name", ["map.PNG", "map.png"])
def test_a_picture_is_drawn_coloured_as_asked_with_its_groups_named(run, tmp_path, monkeypatch, name):
    from lookalike.map import picture

    drawn = []
    monkeypatch.setattr(picture, "write_png", lambda out, m, paths, labels, names, title: drawn.append(
        (str(out), m.ids.tolist(), list(paths), np.asarray(labels).tolist(), names, title)))
    assert run(["--out", tmp_path / name]).exit_code == 0
    assert run(["--out", tmp_path / name, "--color", "cluster"]).exit_code == 0
    paths = [PATHS[0], PATHS[4], PATHS[7]]
    assert drawn == [(str(tmp_path / name), [0, 4, 7], paths, [0, 1, 0], ["/p/cats", "/p/dogs"],
                      "3 images, coloured by folder"),
                     (str(tmp_path / name), [0, 4, 7], paths, [0, 1, 0], ["cluster 1", "cluster 2"],
                      "3 images, coloured by cluster")]


def test_json_with_a_page_names_the_file_written(run, tmp_path):
    result = run(["--out", tmp_path / "m.html", "--json"])
    assert json.loads(result.stdout)["out"] == str(tmp_path / "m.html") and result.stderr == ""


@pytest.mark.parametrize("args, message", [
    ([], "error: say what to write: --out MAP.html, --out MAP.png, or --json"),
    (["--out", "map.svg"], "error: --out map.svg: give a .html or a .png file"),
    (["--out", "map", "--json"], "error: --out map: give a .html or a .png file"),
    (["--out", "map.html.txt"], "error: --out map.html.txt: give a .html or a .png file"),
])
def test_what_cannot_be_written_is_refused_in_one_line_before_the_index_is_opened(monkeypatch, args, message):
    monkeypatch.setattr(maps.Index, "open", lambda path: pytest.fail("the index was opened"))
    result = CliRunner().invoke(app, ["map", *args])
    assert result.exit_code == 1 and result.stderr == message + "\n" and result.stdout == ""
