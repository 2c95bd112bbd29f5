"""``lookalike evaluate``: the vectors of a user's index reused when its model is the same."""

import json
import shutil

from helpers import run_cli as run


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
