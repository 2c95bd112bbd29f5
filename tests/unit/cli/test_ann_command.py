"""``lookalike ann build`` and ``ann check`` (cli/ann.py) in-process over a hand-made index of random
vectors (no model run): the kind built and how many it holds, the setting changed or kept, recall
checked with the queries, k and seed asked for, and the refusal of an index that searches exactly."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.api import Index
from lookalike.cli import app
from lookalike.index.store import Entry, Store
from lookalike.models.registry import resolve
from lookalike.vectors import ann as vectors_ann


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def ix(tmp_path):
    """An index folder of 40 random 8-d vectors for the default model's name (never run here)."""
    spec = resolve()
    vectors = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    with Store.create(tmp_path / "ix", {**spec.identity(), "dim": 8}, ref=spec.name) as store:
        store.put([Entry(f"/p/{i:02d}.png", 1, 1, f"h{i}", 2, 2, v) for i, v in enumerate(vectors)])
    return tmp_path / "ix"


def test_build_makes_the_kind_asked_for_or_keeps_the_setting(ix):
    plain = run("ann", "build", "--index", ix)
    assert plain.exit_code == 0, plain.output
    assert plain.stdout == "exact index over 40 images\n"  # auto: exact for a small collection
    built = run("ann", "build", "--kind", "hnsw", "--index", ix, "--json")
    info = json.loads(built.stdout)
    assert (info["kind"], info["ntotal"], info["dim"]) == ("hnsw", 40, 8)
    assert run("ann", "build", "--index", ix).stdout == "hnsw index over 40 images\n"  # the setting kept
    with Index.open(ix) as idx:
        assert idx.index_type == "hnsw"
    assert json.loads(run("ann", "build", "--kind", "exact", "--index", ix, "--json").stdout) == {"kind": "exact",
                                                                                                  "ntotal": 40}


def test_check_measures_recall_with_the_queries_k_and_seed_asked_for(ix, monkeypatch):
    refused = run("ann", "check", "--index", ix)
    assert refused.exit_code == 1
    assert refused.stderr == (f"error: index {ix} uses exact search (40 images); build one with: lookalike ann build "
                              "--kind hnsw\n")
    assert run("ann", "build", "--kind", "hnsw", "--index", ix).exit_code == 0
    measured = run("ann", "check", "--index", ix, "--queries", 5, "-k", 3)
    assert measured.exit_code == 0, measured.output
    assert re.fullmatch(r"hnsw over 40 images: recall@3 [01]\.\d{3} on 5 queries, p50 \d+\.\d\d ms, p95 \d+\.\d\d ms\n",
                        measured.stdout), measured.stdout
    asked = []

    def spy(built, vectors, ids, n_queries, k, seed):
        asked.append((len(built), vectors.shape, ids.tolist(), n_queries, k, seed))
        return {"k": k, "n_queries": min(n_queries, 40), f"recall@{k}": 0.8125, "p50_ms": 0.125, "p95_ms": 2.5}

    monkeypatch.setattr(vectors_ann, "check", spy)
    got = json.loads(run("ann", "check", "--index", ix, "--queries", 1, "-k", 2, "--seed", 7, "--json").stdout)
    assert got == {"kind": "hnsw", "ntotal": 40, "k": 2, "n_queries": 1, "recall@2": 0.8125, "p50_ms": 0.125, "p95_ms": 2.5}
    assert asked == [(40, (40, 8), list(range(1, 41)), 1, 2, 7)]
    one = run("ann", "check", "--index", ix)
    assert asked[-1][3:] == (100, 10, 0)
    assert one.stdout == "hnsw over 40 images: recall@10 0.812 on 40 queries, p50 0.12 ms, p95 2.50 ms\n"


def test_build_makes_the_approximate_index_again_even_when_it_is_up_to_date(ix):
    import time

    from lookalike.index.approximate import ANN_FILE

    assert run("ann", "build", "--kind", "hnsw", "--index", ix).exit_code == 0
    first = (ix / ANN_FILE).stat().st_mtime_ns
    time.sleep(0.01)
    assert run("ann", "build", "--index", ix).exit_code == 0
    assert (ix / ANN_FILE).stat().st_mtime_ns != first  # written anew, not kept as current
