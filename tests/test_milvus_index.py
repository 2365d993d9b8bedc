"""The durable tier's vector index and search parameters, against a real Milvus server."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import numpy.typing as npt
import pytest
from pymilvus import MilvusClient

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.tiers import milvus_store
from cachefleet_node.tiers.milvus_store import (
    INDEX_BUILD,
    INDEX_TYPE,
    SEARCH_EF,
    MilvusVectorStore,
    VectorRow,
    search_effort,
)
from cachefleet_node.tiers.vector_tier import VectorQuery
from node_harness import MilvusServer

DIM = 384  # all-MiniLM-L6-v2's


def _unit(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    unit: npt.NDArray[np.float32] = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(
        np.float32
    )
    return unit


def _entry(row: int, now: float) -> CacheEntry:
    return CacheEntry(
        entry_id=f"r{row:05d}",
        namespace="ns",
        tenant="t1",
        model="m",
        created_at=now,
        expires_at=now + 3600,
        answers=(b"{}",),
        partition="p0",
    )


async def _load(store: MilvusVectorStore, vectors: npt.NDArray[np.float32], now: float) -> None:
    for start in range(0, len(vectors), 500):
        rows = range(start, min(start + 500, len(vectors)))
        await store.insert([VectorRow(_entry(i, now), vectors[i]) for i in rows])


async def _visible(store: MilvusVectorStore, rows: int) -> None:
    """Wait until the namespace counts `rows` rows (a Milvus server shows writes after a short
    delay: its default consistency is bounded), 30 s at most."""
    for _ in range(150):
        if await store.count("ns") == rows:
            return
        await asyncio.sleep(0.2)


async def _store(uri: str, collection: str) -> MilvusVectorStore:
    store = MilvusVectorStore(uri, None, collection, DIM)
    await asyncio.wait_for(store.connect(), 60)
    return store


def test_search_effort_follows_the_index() -> None:
    assert search_effort("HNSW") == {"ef": SEARCH_EF}
    assert search_effort("AUTOINDEX") == {"ef": SEARCH_EF}  # Milvus 2.3 builds it as HNSW
    assert search_effort("IVF_FLAT") == {}  # the server's defaults, no HNSW parameter


async def test_a_new_collection_gets_the_explicit_index(milvus_server: MilvusServer) -> None:
    collection = "idx" + uuid.uuid4().hex[:12]
    store = await _store(milvus_server.uri, collection)
    admin = MilvusClient(uri=milvus_server.uri, timeout=30)
    try:
        index = admin.describe_index(collection, "vector", timeout=30)
        assert index["index_type"] == INDEX_TYPE
        assert index["metric_type"] == "IP"
        # a Milvus server reports the build parameters (Milvus Lite does not)
        assert {k: int(v) for k, v in index.items() if k in INDEX_BUILD} in ({}, INDEX_BUILD)
        assert store.search_params == {"ef": SEARCH_EF}
    finally:
        admin.close()
        await store.close()


async def test_an_autoindex_collection_from_before_still_serves(
    milvus_server: MilvusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection created by an older node (AUTOINDEX, no build parameters) keeps its
    index; a new node searches it with `ef` and finds every row first for its own vector."""
    collection = "auto" + uuid.uuid4().hex[:12]
    with monkeypatch.context() as patch:
        patch.setattr(milvus_store, "INDEX_TYPE", "AUTOINDEX")
        patch.setattr(milvus_store, "INDEX_BUILD", {})
        old = await _store(milvus_server.uri, collection)
    now = time.time()
    vectors = _unit(np.random.default_rng(3).normal(size=(200, DIM)))
    await _load(old, vectors, now)
    await old.close()
    store = await _store(milvus_server.uri, collection)
    admin = MilvusClient(uri=milvus_server.uri, timeout=30)
    try:
        assert admin.describe_index(collection, "vector", timeout=30)["index_type"] == "AUTOINDEX"
        assert store.search_params == {"ef": SEARCH_EF}
        await _visible(store, 200)
        for i in range(0, 200, 10):
            hits = await store.nearest(VectorQuery("ns", "t1", "p0", vectors[i], 4, now))
            assert hits
            assert hits[0].entry_id == f"r{i:05d}"
    finally:
        admin.close()
        await store.close()


async def test_recall_on_random_vectors_with_the_chosen_effort(
    milvus_server: MilvusServer,
) -> None:
    """3k random unit vectors (a hard case for a graph index: every row about as far), queried
    near a stored row (cosine ~0.8, as a paraphrase): the nearest hit is the exact nearest row
    for ~all queries, and a search for more rows than `SEARCH_EF` gets them all. (A random
    query, with no row near, needs an `ef` of hundreds on Milvus 2.3.5: docs/benchmarks/
    scale.md; it is below any hit threshold.)"""
    collection = "recall" + uuid.uuid4().hex[:12]
    store = await _store(milvus_server.uri, collection)
    admin = MilvusClient(uri=milvus_server.uri, timeout=30)
    try:
        rng = np.random.default_rng(5)
        vectors = _unit(rng.normal(size=(3_000, DIM)))
        now = time.time()
        await _load(store, vectors, now)
        admin.flush(collection, timeout=60)  # sealed segments, searched through the index
        await _visible(store, len(vectors))
        picks = rng.integers(len(vectors), size=100)
        queries = _unit(vectors[picks] + rng.normal(0, 0.7 / np.sqrt(DIM), (100, DIM)))
        exact = np.argmax(vectors @ queries.T, axis=0)
        same = 0
        for query, best in zip(queries, exact, strict=True):
            hits = await store.nearest(VectorQuery("ns", "t1", "p0", query, 1, now))
            same += bool(hits) and hits[0].entry_id == f"r{int(best):05d}"
        assert same >= 98
        wide = await store.search_scope(
            InvalidationScope(namespace="ns"), queries[0], SEARCH_EF + 36
        )
        assert len(wide) == SEARCH_EF + 36
    finally:
        admin.close()
        await store.close()
