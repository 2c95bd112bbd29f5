"""``lookalike show`` (cli/search.py): the rows it draws leave out the query file, drawn at the left."""

import shutil

from typer.testing import CliRunner

from lookalike.cli import app, present


def test_show_leaves_the_query_file_out_of_its_rows_but_keeps_a_copy_of_it(photo_dir, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket", "horse"):
        shutil.copy(photo_dir / f"{name}.jpg", folder / f"{name}.jpg")
    shutil.copy(folder / "chelsea.jpg", folder / "chelsea copy.jpg")  # the same bytes under another name
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(folder), "--index", str(tmp_path / "ix"), "-q"]).exit_code == 0
    drawn = {}
    monkeypatch.setattr(present, "montage", lambda query, rows, out: drawn.update(query=query, rows=rows))
    query = folder / "chelsea.jpg"
    result = runner.invoke(app, ["show", str(query), "-n", "4", "--seed", "3", "--index", str(tmp_path / "ix")])
    assert result.exit_code == 0, result.output
    nearest, random, farthest = drawn["rows"]
    assert str(query) not in [m.path for row in drawn["rows"] for m in row.results]
    assert [m.path for m in nearest.results][0] == str(folder / "chelsea copy.jpg")  # a copy is worth seeing
    assert len(nearest.results) == len(random.results) == len(farthest.results) == 4  # the other four files
    result = runner.invoke(app, ["show", str(query), "-n", "4", "--seed", "3", "--exclude-self",
                                 "--index", str(tmp_path / "ix")])
    assert {m.path for m in drawn["rows"][0].results} == {str(folder / f"{n}.jpg") for n in ("coffee", "rocket", "horse")}


def test_a_random_query_says_its_seed_once_and_draws_every_image_with_it(tmp_path):
    """``query --mode random`` without ``--seed`` prints the fresh seed once, and draws for every query
    image with that one seed: ``--seed`` with it repeats the whole answer, and ``--json`` carries it."""
    import json

    from helpers import sample_photo, tiny_model

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "camera", "chelsea", "coffee", "rocket", "horse"):
        sample_photo(name).resize((48, 40)).save(folder / f"{name}.png")
    runner = CliRunner()
    ix = str(tmp_path / "ix")
    model = str(tiny_model(tmp_path / "m"))
    indexed = runner.invoke(app, ["index", str(folder), "--index", ix, "--model", model, "-q"])
    assert indexed.exit_code == 0, indexed.output
    queries = [str(folder / "chelsea.png"), str(folder / "rocket.png")]
    first = runner.invoke(app, ["query", *queries, "--mode", "random", "-k", "3", "--index", ix, "--format", "paths"])
    assert first.exit_code == 0, first.output
    said = [line for line in first.stderr.splitlines() if line.startswith("seed: ")]
    assert len(said) == 1
    seed = int(said[0].split()[1])
    again = runner.invoke(app, ["query", *queries, "--mode", "random", "-k", "3", "--seed", str(seed), "--index", ix,
                                "--format", "paths"])
    assert again.stdout == first.stdout and len(first.stdout.split()) == 6
    each = [runner.invoke(app, ["query", q, "--mode", "random", "-k", "3", "--seed", str(seed), "--index", ix,
                                "--json"]).stdout for q in queries]
    assert [json.loads(out)["seed"] for out in each] == [seed, seed]
    assert [r["path"] for out in each for r in json.loads(out)["results"]] == first.stdout.split()
