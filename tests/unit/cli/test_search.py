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
