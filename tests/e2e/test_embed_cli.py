"""``lookalike embed`` as a user runs it: JSON report, skipped files, re-runs, one-line errors."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli

pytest.importorskip("pyarrow")


def test_embed_writes_shards_once(photo_dir, tmp_path):
    (tmp_path / "photos").mkdir()
    for p in sorted(photo_dir.iterdir())[:5]:
        (tmp_path / "photos" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = tmp_path / "shards"
    first = json.loads(run_cli("embed", tmp_path / "photos", "--out", out, "--json").stdout)
    assert (first["engine"], first["embedded"], first["unchanged"], first["shards"]) == ("local", 5, 0, 1)
    assert [s["path"] for s in first["skipped"]] == [str(tmp_path / "photos" / "broken.jpg")]
    assert len(list(out.glob("part-*.parquet"))) == 1
    again = run_cli("embed", tmp_path / "photos", "--out", out)
    assert again.stdout.startswith("embedded 0, unchanged 5, skipped 1; 0 shards")
    assert "skipped" in again.stderr and "broken.jpg" in again.stderr
    loaded = json.loads(run_cli("index", "--from", out, "--index", tmp_path / "idx", "--json").stdout)
    assert (loaded["indexed"], loaded["total"], len(loaded["skipped"])) == (5, 5, 1)
    both = run_cli("index", tmp_path / "photos", "--from", out, "--index", tmp_path / "idx", check=False)
    assert both.returncode == 1 and "one of them" in both.stderr


def test_embed_missing_source_is_one_line_error(tmp_path):
    proc = run_cli("embed", tmp_path / "nowhere", "--out", tmp_path / "shards", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: no such file or folder") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_ray_run_is_quiet_unless_verbose(photo_dir, tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "photos").mkdir()
    for p in sorted(photo_dir.iterdir())[:4]:
        (tmp_path / "photos" / p.name).write_bytes(p.read_bytes())
    quiet = run_cli("embed", tmp_path / "photos", "--out", tmp_path / "a", "--engine", "ray", "--workers", "1")
    assert quiet.stderr == ""  # no Ray logs, no "E ... core_worker.cc" line
    assert quiet.stdout.startswith("embedded 4, unchanged 0, skipped 0; 1 shard written to ")
    verbose = run_cli("embed", tmp_path / "photos", "--out", tmp_path / "b", "--engine", "ray", "--workers", "1", "-v")
    assert "Dataset" in verbose.stderr  # Ray Data's own account of the run
