"""``lookalike ann`` and ``index --ann``: building, checking and dropping the approximate index."""

import json

from helpers import run_cli as run


def test_ann_settings_from_the_command_line(photo_dir, tmp_path):
    ix = tmp_path / "ix"
    run("index", photo_dir, "--index", ix, "--ann", "hnsw", "--quiet")
    check = json.loads(run("ann", "check", "--queries", "10", "--index", ix, "--json").stdout)
    assert check["kind"] == "hnsw" and check["recall@10"] == 1.0
    q = photo_dir / "coffee.jpg"
    approx = json.loads(run("query", q, "-k", "4", "--index", ix, "--json").stdout)
    exact = json.loads(run("query", q, "-k", "4", "--exact", "--index", ix, "--json").stdout)
    assert approx == exact
    assert "exact" in run("ann", "build", "--kind", "exact", "--index", ix).stdout
    proc = run("ann", "check", "--index", ix, check=False)
    assert proc.returncode == 1 and "uses exact search" in proc.stderr
    assert run("index", photo_dir, "--index", ix, "--ann", "lsh", check=False).returncode == 2
