"""``ann build`` and ``ann check``: an index's approximate nearest-neighbour structure."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import numpy as np
import typer

from lookalike.api import Index
from lookalike.cli.common import AnnSetting, IndexOpt, JsonOpt, fail
from lookalike.text import plural

app = typer.Typer(no_args_is_help=True, help="Build or check the approximate nearest-neighbour index.")


@app.command("build")
def ann_build(
    kind: Annotated[Optional[AnnSetting], typer.Option("--kind", help="Change the setting first [default: keep]")] = None,
    index_path: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """(Re)build the approximate index of an existing index from its stored vectors."""
    with Index.open(index_path) as idx:
        if kind is not None:
            idx.set_ann(kind.value)
        built = idx.ann(rebuild=True)
        info = built.describe() if built is not None else {"kind": "exact", "ntotal": len(idx)}
    print(json.dumps(info) if as_json else f"{info['kind']} index over {plural(info['ntotal'], 'image')}")


@app.command("check")
def ann_check(
    queries: Annotated[int, typer.Option("--queries", min=1, help="Indexed images sampled as queries.")] = 100,
    k: Annotated[int, typer.Option("-k", min=1, help="Recall@k cut-off.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampled queries.")] = 0,
    index_path: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recall@k of the approximate index against exact search, with query latency."""
    from lookalike.vectors.ann import check

    with Index.open(index_path) as idx:
        built = idx.ann()
        if built is None:
            fail(f"index {idx.location} uses exact search ({plural(len(idx), 'image')}); build one with: lookalike ann build --kind hnsw")
        ids, vectors = idx.vectors()
        report = {"kind": idx.index_type, "ntotal": len(built),
                  **check(built, np.asarray(vectors), np.asarray(ids), n_queries=queries, k=k, seed=seed)}
    if as_json:
        print(json.dumps(report))
    else:
        print(f"{report['kind']} over {plural(report['ntotal'], 'image')}: recall@{k} {report[f'recall@{k}']:.3f} on "
              f"{plural(report['n_queries'], 'query', 'queries')}, p50 {report['p50_ms']:.2f} ms, p95 {report['p95_ms']:.2f} ms")
