"""Reaching Milvus: a server or cluster (``http://host:19530``) or milvus-lite (a local ``.db`` file,
one process at a time, FLAT and IVF_FLAT only).

:func:`connect` opens a URI with a one-line :class:`~lookalike.index.store.StoreError` for a milvus-lite
database another process holds, a damaged one or a file in its place (:func:`damaged`);
:func:`default_index_type` is the vector index a URI's Milvus offers;
:func:`cosine_range` the range-search parameters of a cosine radius; :func:`pages` every row of a
collection, a page at a time. The collection lookalike keeps in Milvus, and its search:
:mod:`lookalike.cluster.collection`, :mod:`lookalike.cluster.collection_search`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator

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


def hash_index_type(uri: str) -> str:
    """The scalar index of the content-hash field (every uploaded query looks its hash up): INVERTED on
    milvus-lite; on a server, the server's own choice for a text field (Trie on Milvus 2.3, INVERTED on
    later versions), which an empty type asks for."""
    return "INVERTED" if is_lite(uri) else ""


def connect(uri: str, rebuild: bool = False):
    """A ``MilvusClient`` for ``uri``; :class:`StoreError` (one line, naming the file and the remedy)
    when it cannot be opened: a milvus-lite database held by another process (milvus-lite allows
    one process per database), a file where its folder should be, or a damaged one. With
    ``rebuild`` a file in its place is removed and a damaged collection is left for the caller to
    drop (:func:`~lookalike.cluster.collection.create` with ``rebuild``)."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    path = os.path.abspath(os.path.expanduser(uri))
    if is_lite(uri) and os.path.isfile(path):
        if not rebuild:
            raise StoreError(f"{path} is not a milvus-lite database (a file of {os.path.getsize(path):,} bytes; "
                             "milvus-lite keeps a folder): move it away, or make it again with "
                             "`lookalike ingest SHARDS --uri URI --rebuild`")
        os.remove(path)

    # (after importing pymilvus, whose logging set-up would undo it) milvus-lite's in-process server
    # has no timestamp service: a query iterator asks it for one (grpc logs the refusal as an error),
    # warns, and uses the client's clock, right for a database only this process has open. Neither
    # log says anything to a user.
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    with quiet():
        try:
            client = MilvusClient(path if is_lite(uri) else uri)
        except MilvusException as e:
            if not is_lite(uri):
                raise StoreError(f"cannot connect to Milvus at {uri}: {e.message}") from None
            if _held(path):  # by another process: this one's lite server did not start
                raise StoreError(f"cannot open milvus-lite database {path}: another process has it open "
                                 "(milvus-lite allows one process per file: stop the other `lookalike serve` "
                                 "or `ingest`, or use a Milvus server URI)") from None
            raise StoreError(damaged(path, e)) from None
        if is_lite(uri) and not rebuild:
            try:
                client.list_collections()  # reads every collection's schema, manifest and data files
            except MilvusException as e:
                client.close()
                raise StoreError(damaged(path, e)) from None
    return client


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No log records from milvus-lite and pymilvus's call wrappers, which log a traceback before
    pymilvus raises (the caller says it in one line)."""
    loggers = [logging.getLogger(name) for name in ("milvus_lite", "pymilvus.decorators")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _held(path: str) -> bool:
    """Whether a milvus-lite server holds the database at ``path`` (its ``LOCK`` file's lock)."""
    try:
        fd = os.open(os.path.join(path, "LOCK"), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def damaged(where: str, error) -> str:
    """The one-line message for a Milvus database or collection at ``where`` that cannot be read
    (``error``: what Milvus raised)."""
    reason = " ".join(str(getattr(error, "message", error)).split())
    return (f"the Milvus data at {where} cannot be read ({reason}); make it again from the shards with "
            "`lookalike ingest SHARDS --uri URI --rebuild`, or restore it from a backup")


def cosine_range(radius: float) -> dict:
    """Milvus range-search parameters for cosine distances up to ``radius`` (a hair beyond, for
    float32 rounding): COSINE similarity in [1 − radius, 1]."""
    return {"radius": 1.0 - radius - 1e-5, "range_filter": 1.0 + 1e-5}


def pages(client, name: str, fields: list[str], **options):
    """Every row's ``fields`` (dicts) of collection ``name`` (non-negative int64 keys ``id``), a page of
    rows at a time, through a query iterator (one page in memory; ``options``: the query's, such as
    ``consistency_level``)."""
    iterator = client.query_iterator(name, batch_size=_PAGE, filter="id >= 0", output_fields=fields, **options)
    try:
        while page := iterator.next():
            yield page
    finally:
        iterator.close()
