"""``lookalike show``: the figure of nearest, random and farthest images, and the seed of its random row."""

from helpers import run_cli as run


def test_show_prints_the_seed_of_its_random_row(odd, tmp_path):
    root, ix = odd
    q = root / "coffee [1].jpg"
    first = run("show", q, "-n", "2", "--out", tmp_path / "first.png", "--index", ix)
    seed = int(first.stderr.split()[1])
    run("show", q, "-n", "2", "--seed", seed, "--out", tmp_path / "again.png", "--index", ix)
    assert (tmp_path / "first.png").read_bytes() == (tmp_path / "again.png").read_bytes()
