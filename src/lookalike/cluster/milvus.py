"""Reaching Milvus: a server or cluster (``http://host:19530``) or milvus-lite (a local ``.db`` file,
one process at a time, FLAT and IVF_FLAT only).

:func:`connect` opens a URI with a one-line :class:`~lookalike.index.store.StoreError` for a milvus-lite
file another process holds; :func:`default_index_type` is the vector index a URI's Milvus offers;
:func:`cosine_range` the range-search parameters of a cosine radius; :func:`pages` every row of a
collection, a page at a time. The collection lookalike keeps in Milvus, and its search:
:mod:`lookalike.cluster.collection`, :mod:`lookalike.cluster.collection_search`.
"""

from __future__ import annotations

import logging
import os

from lookalike.index.store import StoreError

#: Most results Milvus returns for one query (its ``topk`` limit).
MAX_HITS = 16_384
_PAGE = 4096
#: HNSW build parameters on a Milvus server (its documented defaults range).
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
#: HNSW search breadth when the caller gives none (at least the number of results asked for).
HNSW_EF = 64


def is_lite(uri: str) -> bool:
    """True when ``uri`` is a milvus-lite database file rather than a server address."""
    return "://" not in uri


def default_index_type(uri: str) -> str:
    """The vector index to build at ``uri``: FLAT on milvus-lite (exact; lite is for tests and small
    collections), HNSW on a Milvus server."""
    return "FLAT" if is_lite(uri) else "HNSW"


def connect(uri: str):
    """A ``MilvusClient`` for ``uri``; :class:`StoreError` (one line) when it cannot be opened, e.g. a
    milvus-lite file held by another process (milvus-lite allows one process per file)."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    # (after importing pymilvus, whose logging set-up would undo it) milvus-lite's in-process server
    # has no timestamp service: a query iterator asks it for one (grpc logs the refusal as an error),
    # warns, and uses the client's clock, right for a database only this process has open. Neither
    # log says anything to a user.
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    quiet = logging.getLogger("milvus_lite")  # it logs a traceback before pymilvus raises
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        return MilvusClient(os.path.expanduser(uri) if is_lite(uri) else uri)
    except MilvusException as e:
        if is_lite(uri):
            raise StoreError(f"cannot open milvus-lite database {os.path.abspath(uri)}: another process has it "
                             "open (milvus-lite allows one process per file: stop the other `lookalike serve` or "
                             "`index`, or use a Milvus server URI)") from None
        raise StoreError(f"cannot connect to Milvus at {uri}: {e.message}") from None
    finally:
        quiet.setLevel(level)


def cosine_range(radius: float) -> dict:
    """Milvus range-search parameters for cosine distances up to ``radius`` (a hair beyond, for
    float32 rounding): COSINE similarity in [1 − radius, 1]."""
    return {"radius": 1.0 - radius - 1e-5, "range_filter": 1.0 + 1e-5}


def pages(client, name: str, fields: list[str]):
    """Every row's ``fields`` (dicts) of collection ``name`` (non-negative int64 keys ``id``), a page of
    rows at a time, through a query iterator (one page in memory)."""
    iterator = client.query_iterator(name, batch_size=_PAGE, filter="id >= 0", output_fields=fields)
    try:
        while page := iterator.next():
            yield page
    finally:
        iterator.close()
