"""A stand-in for pymilvus' ``MilvusClient``: the calls lookalike makes, on rows held in memory, so that
the collection, its searcher and ingest are tested in milliseconds, with no Milvus server.

It keeps Milvus' rules that lookalike relies on: rows must carry exactly the schema's fields (a vector
of the schema's dimension, text no longer than its ``max_length``); an upsert replaces the row of its
key; a query's filter is a boolean expression over the fields (lookalike's, ``id >= 0``, ``id in [..]``,
``hash == "…"``, ``and``/``or``, are also Python's: they are evaluated as Python; an integer past int64
is refused); a search ranks by
COSINE similarity, most similar first, at most 16,384 results, and an HNSW search needs ``ef`` ≥ its
limit; a range search keeps ``radius < similarity <= range_filter``. Searches are exact whatever the
index. Every call is recorded (:attr:`Milvus.calls`: name, collection, keyword arguments).
"""

from __future__ import annotations

import re

import numpy as np

#: Milvus' most results of one search (``topk``).
TOPK = 16_384


class MilvusError(Exception):
    """What the stand-in raises for a call Milvus would refuse (a ``MilvusException`` where one is needed)."""


class _Schema:
    def __init__(self, **options) -> None:
        self.options, self.fields = options, {}

    def add_field(self, name: str, datatype, **options) -> None:
        self.fields[name] = (datatype, options)


class _IndexParams:
    def __init__(self) -> None:
        self.indexes = []

    def add_index(self, field_name: str, **options) -> None:
        self.indexes.append({"field": field_name, **options})


class _Collection:
    def __init__(self, schema: _Schema, indexes: list[dict], consistency: str) -> None:
        self.schema, self.consistency = schema, consistency
        self.indexes = {i["field"]: i for i in indexes}  # a field has at most one index
        self.rows: dict[int, dict] = {}
        self.properties: dict[str, str] = {}
        self.loaded = False

    @property
    def index(self) -> dict:
        """The vector field's index."""
        return self.indexes["vector"]


class Milvus:
    """Milvus servers (and milvus-lite files) by URI; :meth:`client` stands in for ``MilvusClient``."""

    def __init__(self) -> None:
        self.servers: dict[str, dict[str, _Collection]] = {}
        self.calls: list[tuple] = []
        self.fail: dict[str, Exception] = {}  # method name -> what that call raises
        self.opened = self.closed = 0

    def client(self, uri: str, **options) -> "Client":
        if "client" in self.fail:
            raise self.fail["client"]
        self.opened += 1
        return Client(self, self.servers.setdefault(uri, {}), uri)

    def at(self, uri: str) -> dict[str, _Collection]:
        return self.servers[uri]

    def reads(self) -> list[tuple[str, str | None]]:
        """(call, consistency level) of every query, query iterator and search, in order."""
        return [(name, options.get("consistency_level")) for name, _, options in self.calls
                if name in ("query", "query_iterator", "search")]


class Client:
    def __init__(self, milvus: Milvus, collections: dict[str, _Collection], uri: str) -> None:
        self.milvus, self.collections, self.uri = milvus, collections, uri

    def _call(self, name: str, collection: str | None, **options) -> None:
        self.milvus.calls.append((name, collection, options))
        if name in self.milvus.fail:
            raise self.milvus.fail[name]

    def _get(self, name: str) -> _Collection:
        if name not in self.collections:
            raise MilvusError(f"collection not found[collection={name}]")
        return self.collections[name]

    def close(self) -> None:
        self.milvus.closed += 1

    # collections
    def list_collections(self) -> list[str]:
        self._call("list_collections", None)
        return sorted(self.collections)

    def has_collection(self, name: str) -> bool:
        self._call("has_collection", name)
        return name in self.collections

    def drop_collection(self, name: str) -> None:
        self._call("drop_collection", name)
        self.collections.pop(name, None)

    def create_schema(self, **options) -> _Schema:
        return _Schema(**options)

    def prepare_index_params(self) -> _IndexParams:
        return _IndexParams()

    def create_collection(self, name: str, schema: _Schema, index_params: _IndexParams, consistency_level: str,
                          **options) -> None:
        self._call("create_collection", name, consistency_level=consistency_level)
        if name in self.collections:
            raise MilvusError(f"collection {name} exists")
        self.collections[name] = _Collection(schema, index_params.indexes, consistency_level)
        self.collections[name].loaded = True

    def alter_collection_properties(self, name: str, properties: dict) -> None:
        self._call("alter_collection_properties", name)
        self._get(name).properties.update({k: str(v) for k, v in properties.items()})

    def describe_collection(self, name: str) -> dict:
        self._call("describe_collection", name)
        return {"collection_name": name, "properties": dict(self._get(name).properties)}

    def describe_index(self, name: str, index_name: str) -> dict | None:
        self._call("describe_index", name)
        index = self._get(name).indexes.get(index_name)  # an index is named after its field
        if index is None:
            return None
        return {"field_name": index["field"], "index_type": index["index_type"],
                **({"metric_type": index["metric_type"]} if "metric_type" in index else {})}

    def list_indexes(self, name: str, field_name: str = "") -> list[str]:
        self._call("list_indexes", name)
        return [f for f in self._get(name).indexes if field_name in ("", f)]

    def create_index(self, name: str, index_params: _IndexParams) -> None:
        self._call("create_index", name)
        c = self._get(name)
        for index in index_params.indexes:
            if index["field"] in c.indexes:
                raise MilvusError(f"at most one distinct index is allowed per field[field={index['field']}]")
            c.indexes[index["field"]] = index

    def load_collection(self, name: str) -> None:
        self._call("load_collection", name)
        self._get(name).loaded = True

    def flush(self, name: str) -> None:
        self._call("flush", name)
        self._get(name)

    # rows
    def _checked(self, c: _Collection, row: dict) -> dict:
        if set(row) != set(c.schema.fields):
            raise MilvusError(f"fields {sorted(row)} are not the schema's {sorted(c.schema.fields)}")
        for field, (kind, options) in c.schema.fields.items():
            value = row[field]
            if "dim" in options and len(value) != options["dim"]:
                raise MilvusError(f"vector of {len(value)} numbers in a {options['dim']}-d field")
            if "max_length" in options and len(value.encode()) > options["max_length"]:
                raise MilvusError(f"{field} longer than {options['max_length']}")
            if kind.name == "INT64" and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
                raise MilvusError(f"{field} is not an integer: {value!r}")
        stored = dict(row)
        stored["vector"] = [float(x) for x in np.asarray(row["vector"], np.float32)]
        return stored

    def insert(self, name: str, data: list[dict]) -> None:
        self._call("insert", name, rows=len(data))
        c = self._get(name)
        for row in data:
            if int(row["id"]) in c.rows:
                raise MilvusError("insert of a key held")  # (Milvus would keep both: never do it)
            c.rows[int(row["id"])] = self._checked(c, row)

    def upsert(self, name: str, data: list[dict]) -> None:
        self._call("upsert", name, rows=len(data))
        c = self._get(name)
        for row in data:
            c.rows[int(row["id"])] = self._checked(c, row)

    def delete(self, name: str, ids: list[int]) -> None:
        self._call("delete", name, ids=list(ids))
        c = self._get(name)
        for i in ids:
            c.rows.pop(int(i), None)

    def _matching(self, c: _Collection, filter: str) -> list[dict]:
        if not c.loaded:
            raise MilvusError("collection not loaded")
        rows = list(c.rows.values())  # in the order written: Milvus promises no order
        if not filter.strip():
            return rows
        if any(int(n) >= 2**63 for n in re.findall(r"\d+", filter)):
            raise MilvusError(f"an integer past int64 in {filter[:80]!r}")  # Milvus' expressions are int64
        code = compile(filter, "<filter>", "eval")
        return [r for r in rows if eval(code, {"__builtins__": {}}, dict(r))]

    def query(self, name: str, filter: str = "", output_fields: list[str] | None = None, **options) -> list[dict]:
        self._call("query", name, filter=filter, **options)
        c = self._get(name)
        if output_fields == ["count(*)"]:
            return [{"count(*)": len(self._matching(c, filter))}]
        if not filter.strip():
            raise MilvusError("a query needs a filter or a limit")
        return [{"id": r["id"], **{f: r[f] for f in output_fields or ()}} for r in self._matching(c, filter)]

    def query_iterator(self, name: str, batch_size: int, filter: str, output_fields: list[str], **options):
        self._call("query_iterator", name, filter=filter, batch_size=batch_size, **options)
        rows = [{"id": r["id"], **{f: r[f] for f in output_fields}} for r in self._matching(self._get(name), filter)]
        return _Iterator(rows, batch_size)

    def search(self, name: str, data: list[list[float]], limit: int, search_params: dict | None = None,
               output_fields: list[str] | None = None, **options) -> list[list[dict]]:
        self._call("search", name, limit=limit, search_params=search_params, **options)
        c = self._get(name)
        if not 1 <= limit <= TOPK:
            raise MilvusError(f"limit {limit} out of [1, {TOPK}]")
        params = (search_params or {}).get("params", {})
        if c.index["index_type"] == "HNSW" and "radius" not in params and params.get("ef", 0) < limit:
            raise MilvusError(f"ef {params.get('ef')} below the limit {limit}")
        rows = self._matching(c, "")
        if not rows:
            return [[] for _ in data]
        x = np.asarray([r["vector"] for r in rows], np.float64)
        q = np.asarray(data, np.float64)
        sims = (q @ x.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(x, axis=1))
        hits = []
        for row_sims in sims:
            order = np.lexsort((np.arange(len(rows)), -row_sims))
            if "radius" in params:
                order = [j for j in order if params["radius"] < row_sims[j] <= params["range_filter"]]
            hits.append([{"id": rows[j]["id"], "distance": float(row_sims[j]),
                          "entity": {f: rows[j][f] for f in output_fields or ()}} for j in list(order)[:limit]])
        return hits


class _Iterator:
    def __init__(self, rows: list[dict], size: int) -> None:
        self.rows, self.size, self.at, self.closed = rows, size, 0, False

    def next(self) -> list[dict]:
        page = self.rows[self.at:self.at + self.size]
        self.at += self.size
        return page

    def close(self) -> None:
        self.closed = True
