"""Fixtures of the cluster tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def milvus(monkeypatch):
    """Milvus stood in for (milvus_standin.py): ``pymilvus.MilvusClient`` opens the stand-in's servers by URI."""
    pymilvus = pytest.importorskip("pymilvus")
    from milvus_standin import Milvus

    m = Milvus()
    monkeypatch.setattr(pymilvus, "MilvusClient", m.client)
    return m
