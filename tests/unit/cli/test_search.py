"""``lookalike query`` and ``lookalike show`` (cli/search.py) in-process over a small index made with the
tiny model: each output format and what it holds, the options reaching the search, failed queries said
by name while the others are answered, the seed of a random draw, and the rows ``show`` draws."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from helpers import sample_photo, tiny_index
from lookalike import api, fetch
from lookalike.cli import app, present, search
from lookalike.images import UPLOAD_MAX_BYTES

NAMES = ("astronaut", "camera", "chelsea", "coffee", "rocket", "horse")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_show_leaves_the_query_file_out_of_its_rows_but_keeps_a_copy_of_it(tmp_path, monkeypatch):
    folder, ix, model = tiny_index(tmp_path, ("chelsea", "coffee", "rocket", "horse"))
    shutil.copy(folder / "chelsea.png", folder / "chelsea copy.png")  # the same bytes under another name
    assert run("index", folder, "--index", ix, "--model", model, "-q").exit_code == 0
    drawn = {}
    monkeypatch.setattr(present, "montage", lambda query, rows, out: drawn.update(query=query, rows=rows, out=out))
    query = folder / "chelsea.png"
    result = run("show", query, "-n", "4", "--seed", "3", "--index", ix)
    assert result.exit_code == 0, result.output
    nearest, random, farthest = drawn["rows"]
    assert [r.mode for r in drawn["rows"]] == ["nearest", "random", "farthest"]
    assert {r.metric for r in drawn["rows"]} == {"cosine"} and {r.query for r in drawn["rows"]} == {str(query)}
    assert random.seed == 3 and nearest.seed is None and farthest.seed is None
    assert str(query) not in [m.path for row in drawn["rows"] for m in row.results]
    assert [m.path for m in nearest.results][0] == str(folder / "chelsea copy.png")  # a copy is worth seeing
    assert len(nearest.results) == len(random.results) == len(farthest.results) == 4  # the other four files
    assert drawn["query"] == str(query) and str(drawn["out"]) == "lookalike.png"
    assert result.stdout == "lookalike.png\n"
    assert result.stderr == "seed: 3 (repeat this random draw with --seed 3)\n"
    result = run("show", query, "-n", "2", "--seed", "3", "--exclude-self", "--metric", "l2", "--out", tmp_path / "f.png",
                 "--index", ix)
    assert result.exit_code == 0, result.output
    assert all(m.path not in (str(query), str(folder / "chelsea copy.png")) for r in drawn["rows"] for m in r.results)
    assert [len(r.results) for r in drawn["rows"]] == [2, 2, 2] and {r.metric for r in drawn["rows"]} == {"l2"}
    assert drawn["out"] == tmp_path / "f.png" and result.stdout == f"{tmp_path / 'f.png'}\n"


def test_show_draws_a_fresh_seed_and_says_it_and_fails_in_one_line_on_an_unreadable_image(tmp_path, monkeypatch):
    folder, ix, _ = tiny_index(tmp_path, ("chelsea", "coffee", "rocket"))
    drawn = {}
    monkeypatch.setattr(present, "montage", lambda query, rows, out: drawn.update(rows=rows))
    monkeypatch.setattr(api, "fresh_seed", lambda: 1234)
    result = run("show", folder / "coffee.png", "--index", ix)
    assert result.exit_code == 0, result.output
    assert drawn["rows"][1].seed == 1234
    assert result.stderr == "seed: 1234 (repeat this random draw with --seed 1234)\n"
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    drawn.clear()
    result = run("show", tmp_path / "broken.png", "--index", ix)
    assert result.exit_code == 1 and drawn == {} and result.stdout == ""
    assert result.stderr.startswith(f"error: {tmp_path / 'broken.png'}: ") and result.stderr.count("\n") == 1


def test_query_prints_tsv_in_a_pipe_with_a_query_column_for_several_queries(tmp_path):
    folder, ix, _ = tiny_index(tmp_path, NAMES)
    one = run("query", folder / "rocket.png", "-k", "3", "--index", ix)
    assert one.exit_code == 0, one.output
    lines = one.stdout.splitlines()
    assert lines[0] == "rank\tdistance\tpath" and len(lines) == 4
    assert lines[1] == f"1\t0.000000\t{folder / 'rocket.png'}"  # the query file itself, at distance 0
    assert [line.split("\t")[0] for line in lines[1:]] == ["1", "2", "3"]
    distances = [float(line.split("\t")[1]) for line in lines[1:]]
    assert distances == sorted(distances) and distances[1] > 0
    two = run("query", folder / "rocket.png", folder / "horse.png", "-k", "2", "--index", ix)
    lines = two.stdout.splitlines()
    assert lines[0] == "query\trank\tdistance\tpath" and len(lines) == 5
    assert lines[1] == f"{folder / 'rocket.png'}\t1\t0.000000\t{folder / 'rocket.png'}"
    assert lines[3] == f"{folder / 'horse.png'}\t1\t0.000000\t{folder / 'horse.png'}"
    paths = run("query", folder / "rocket.png", "-k", "2", "--format", "paths", "--exclude-self", "--index", ix)
    assert paths.stdout == "".join(line.split("\t")[2] + "\n" for line in one.stdout.splitlines()[2:4])
    table = run("query", folder / "rocket.png", "-k", "2", "--format", "table", "--index", ix)
    assert f"nearest to {folder / 'rocket.png'} (cosine)" in table.stdout and "0.0000" in table.stdout


def test_query_json_is_one_object_for_one_query_and_a_list_for_several_with_mode_and_metric(tmp_path):
    folder, ix, _ = tiny_index(tmp_path, NAMES)
    got = json.loads(run("query", folder / "camera.png", "-k", "6", "--mode", "farthest", "--metric", "l2", "--json",
                         "--index", ix).stdout)
    assert (got["query"], got["mode"], got["metric"]) == (str(folder / "camera.png"), "farthest", "l2")
    assert "seed" not in got and [r["rank"] for r in got["results"]] == [1, 2, 3, 4, 5, 6]
    assert got["results"][-1] == {"rank": 6, "path": str(folder / "camera.png"), "distance": 0.0}  # farthest first
    distances = [r["distance"] for r in got["results"]]
    assert distances == sorted(distances, reverse=True)
    both = json.loads(run("query", folder / "camera.png", folder / "coffee.png", "-k", "1", "--json", "--index", ix).stdout)
    assert [(d["query"], d["results"][0]["path"]) for d in both] == [(str(folder / n), str(folder / n))
                                                                   for n in ("camera.png", "coffee.png")]


def test_a_failed_query_is_said_by_name_and_the_others_are_still_answered(tmp_path):
    folder, ix, _ = tiny_index(tmp_path, NAMES)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    result = run("query", broken, folder / "horse.png", "-k", "1", "--index", ix)
    assert result.exit_code == 1
    assert result.stdout == f"rank\tdistance\tpath\n1\t0.000000\t{folder / 'horse.png'}\n"  # one answer: no query column
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: {broken}: ") and lines[1] == "error: 1 of 2 queries failed" and len(lines) == 2
    as_json = run("query", broken, folder / "horse.png", "-k", "1", "--json", "--index", ix)
    got = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and got[0]["query"] == str(broken) and lines[0].endswith(got[0]["error"])
    assert set(got[0]) == {"query", "error"} and got[1]["results"][0]["path"] == str(folder / "horse.png")
    alone = run("query", broken, "--index", ix)
    assert alone.exit_code == 1 and alone.stdout == ""  # no header when no query is answered
    assert alone.stderr.count("\n") == 1 and "queries failed" not in alone.stderr
    folder_query = run("query", folder, "--index", ix)
    assert folder_query.exit_code == 1
    assert folder_query.stderr == f"error: {folder}: a folder, not an image: give image files (such as {folder / '*.jpg'})\n"


def test_the_search_options_reach_the_index_and_a_montage_shows_the_first_answer(tmp_path, monkeypatch):
    folder, ix, _ = tiny_index(tmp_path, NAMES)
    asked = []
    real = api.Index.query

    def spy(self, image, k, mode, metric, seed, exclude_self, **options):
        asked.append((image, k, mode, metric, seed, exclude_self, options))
        return real(self, image, k, mode, metric, seed, exclude_self, **options)

    monkeypatch.setattr(api.Index, "query", spy)
    drawn = {}
    monkeypatch.setattr(present, "montage", lambda query, rows, out: drawn.update(query=query, rows=rows, out=out))
    queries = [str(folder / "coffee.png"), str(folder / "chelsea.png")]
    result = run("query", *queries, "-k", "2", "--exact", "--ef-search", "7", "--nprobe", "3", "--exclude-self",
                 "--montage", tmp_path / "m.png", "--index", ix)
    assert result.exit_code == 0, result.output
    assert [a[0] for a in asked] == queries
    assert {(a[1], a[2].value, a[3].value, a[4], a[5]) for a in asked} == {(2, "nearest", "cosine", None, True)}
    assert asked[0][6] == {"label": queries[0], "exact": True, "ef_search": 7, "nprobe": 3}
    assert drawn["query"] == queries[0] and drawn["out"] == tmp_path / "m.png"
    assert [r.query for r in drawn["rows"]] == [queries[0]] and len(drawn["rows"][0].results) == 2
    asked.clear()
    assert run("query", queries[0], "--index", ix).exit_code == 0
    assert asked[0][1:6] == (10, search.Mode.nearest, search.MetricName.cosine, None, False)
    assert asked[0][6] == {"label": queries[0], "exact": False, "ef_search": None, "nprobe": None}


def test_a_query_by_address_is_fetched_within_the_upload_limit(tmp_path, monkeypatch):
    folder, ix, _ = tiny_index(tmp_path, NAMES)
    fetched = []
    monkeypatch.setattr(fetch, "fetch", lambda url, limit: fetched.append((url, limit)) or
                        ((folder / "rocket.png").read_bytes(), "r.png"))
    result = run("query", "https://example.org/r.png", "-k", "1", "--json", "--index", ix)
    assert result.exit_code == 0, result.output
    assert fetched == [("https://example.org/r.png", UPLOAD_MAX_BYTES)]
    got = json.loads(result.stdout)
    assert got["query"] == "https://example.org/r.png" and got["results"][0] == {"rank": 1, "path": str(folder / "rocket.png"),
                                                                                "distance": 0.0}


def test_query_duplicates_lists_the_files_the_rule_finds_or_says_there_are_none(tmp_path, monkeypatch):
    from lookalike import dedup

    folder, ix, model = tiny_index(tmp_path, NAMES)
    shutil.copy(folder / "coffee.png", folder / "coffee copy.png")
    assert run("index", folder, "--index", ix, "--model", model, "-q").exit_code == 0
    resolved = []
    rule = dedup.Rule(0.0)
    monkeypatch.setattr(dedup, "resolve_threshold", lambda value, model: resolved.append((value, model["name"]))
                        or (rule, None))
    result = run("query", folder / "coffee.png", "--duplicates", "--format", "paths", "--index", ix)
    assert result.exit_code == 0, result.output
    assert resolved == [("near", "tiny-0")]
    assert sorted(result.stdout.splitlines()) == [str(folder / "coffee copy.png"), str(folder / "coffee.png")]
    sample_photo("moon").resize((48, 40)).save(tmp_path / "new.png")
    none = run("query", tmp_path / "new.png", "--duplicates", "--index", ix)
    assert none.exit_code == 0 and none.stdout == "rank\tdistance\tpath\n"  # answered: nothing found
    assert none.stderr == f"no duplicate of {tmp_path / 'new.png'} in the index (none by {rule.describe()})\n"


@pytest.mark.parametrize("as_json", [False, True])
def test_a_random_query_says_its_seed_once_and_draws_every_image_with_it(tmp_path, as_json):
    """``query --mode random`` without ``--seed`` prints the fresh seed once, and draws for every query
    image with that one seed: ``--seed`` with it repeats the whole answer, and ``--json`` carries it."""
    folder, ix, _ = tiny_index(tmp_path, NAMES)
    queries = [folder / "chelsea.png", folder / "rocket.png"]
    if as_json:
        first = run("query", *queries, "--mode", "random", "-k", "3", "--index", ix, "--json")
        assert first.exit_code == 0 and first.stderr == ""  # --json: the seed is in the answer only
        got = json.loads(first.stdout)
        assert got[0]["seed"] == got[1]["seed"]
        again = run("query", *queries, "--mode", "random", "-k", "3", "--seed", got[0]["seed"], "--index", ix, "--json")
        assert json.loads(again.stdout) == got
        return
    first = run("query", *queries, "--mode", "random", "-k", "3", "--index", ix, "--format", "paths")
    assert first.exit_code == 0, first.output
    said = first.stderr.splitlines()
    assert len(said) == 1 and said[0].startswith("seed: ")
    seed = int(said[0].split()[1])
    assert said[0] == f"seed: {seed} (repeat this random draw with --seed {seed})"
    again = run("query", *queries, "--mode", "random", "-k", "3", "--seed", seed, "--index", ix, "--format", "paths")
    assert again.stdout == first.stdout and len(first.stdout.split()) == 6
    each = [run("query", q, "--mode", "random", "-k", "3", "--seed", seed, "--index", ix, "--json").stdout for q in queries]
    assert [json.loads(out)["seed"] for out in each] == [seed, seed]
    assert [r["path"] for out in each for r in json.loads(out)["results"]] == first.stdout.split()


def test_without_format_a_terminal_gets_a_table_and_a_pipe_tsv(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert search._output_format(None) == "table" and search._output_format(search.Format.paths) == "paths"
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert search._output_format(None) == "tsv" and search._output_format(search.Format.table) == "table"


@pytest.mark.parametrize("command", ["query", "show"])
def test_the_index_or_collection_asked_for_is_opened_with_its_options(tmp_path, monkeypatch, command):
    folder, ix, _ = tiny_index(tmp_path, NAMES)
    opened = []
    monkeypatch.setattr(search, "open_index", lambda *a, **kw: opened.append((a, kw)) or api.Index.open(ix))
    monkeypatch.setattr(present, "montage", lambda query, rows, out: None)
    result = run(command, folder / "horse.png", "--uri", "http://m:19530", "--collection", "c", "--threads", 3,
                 "--device", "cpu", "--weights", tmp_path / "w.pth")
    assert result.exit_code == 0, result.output
    assert opened == [((None, "http://m:19530", "c"), {"threads": 3, "device": "cpu", "weights": tmp_path / "w.pth"})]
    assert run(command, folder / "horse.png", "--index", ix).exit_code == 0
    assert opened[-1] == ((ix, None, None), {"threads": None, "device": "auto", "weights": None})


def test_a_fetched_query_for_duplicates_is_named_by_its_address(tmp_path, monkeypatch):
    from lookalike import dedup

    folder, ix, _ = tiny_index(tmp_path, NAMES)
    monkeypatch.setattr(dedup, "resolve_threshold", lambda value, model: (dedup.Rule(0.0), None))
    monkeypatch.setattr(fetch, "fetch", lambda url, limit: ((folder / "coffee.png").read_bytes(), "c.png"))
    got = json.loads(run("query", "https://example.org/c.png", "--duplicates", "--json", "--index", ix).stdout)
    assert got["query"] == "https://example.org/c.png" and got["results"][0]["path"] == str(folder / "coffee.png")


def test_on_a_terminal_the_seed_label_is_bold_and_an_error_label_bold_red(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from lookalike.cli import common

    out = io.StringIO()
    monkeypatch.setattr(common, "err", Console(file=out, force_terminal=True, color_system="standard", width=200))
    search._announce(42)
    assert out.getvalue() == "\x1b[1mseed:\x1b[0m 42 (repeat this random draw with --seed 42)\n"
    folder, ix, _ = tiny_index(tmp_path, NAMES)
    out.seek(0), out.truncate()
    run("query", tmp_path / "missing.png", folder / "horse.png", "--index", ix)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"\x1b[1;31merror:\x1b[0m {tmp_path / 'missing.png'}: ")
    assert lines[1] == "\x1b[1;31merror:\x1b[0m 1 of 2 queries failed"


def test_one_random_query_says_its_seed_before_its_results(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "fresh_seed", lambda: 5)
    folder, ix, _ = tiny_index(tmp_path, NAMES)
    result = run("query", folder / "horse.png", "--mode", "random", "-k", "2", "--index", ix)
    assert result.exit_code == 0 and result.stderr == "seed: 5 (repeat this random draw with --seed 5)\n"
    after_a_failure = run("query", tmp_path / "missing.png", folder / "horse.png", "--mode", "random", "--index", ix)
    assert after_a_failure.stderr.splitlines()[1] == "seed: 5 (repeat this random draw with --seed 5)"
