"""The Milvus tier against a real Milvus server: nodes of one fleet starting together."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.tiers.milvus_store import MilvusVectorStore, VectorRow
from cachefleet_node.tiers.vector_tier import VectorQuery
from node_harness import MilvusServer


async def test_nodes_creating_one_collection_at_once_all_connect(
    milvus_server: MilvusServer,
) -> None:
    for _ in range(3):
        collection = "race" + uuid.uuid4().hex[:12]
        stores = [MilvusVectorStore(milvus_server.uri, None, collection, 8) for _ in range(3)]
        try:
            # every node finds no collection and creates it: none may give up
            await asyncio.wait_for(asyncio.gather(*(s.connect() for s in stores)), 60)
            assert all(store.connected for store in stores)
        finally:
            for store in stores:
                await store.close()


def _entry(namespace: str, tenant: str, now: float) -> CacheEntry:
    return CacheEntry(
        entry_id=uuid.uuid4().hex,
        namespace=namespace,
        tenant=tenant,
        model="m",
        created_at=now,
        expires_at=now + 3600,
        answers=(b"{}",),
        partition="p0",
    )


async def _until_count(store: MilvusVectorStore, namespace: str, expected: int) -> int:
    """The namespace's row count once it is `expected`, or the last count after 30 s (a
    server may show writes after a short delay)."""
    for _ in range(150):
        if (count := await store.count(namespace)) == expected:
            break
        await asyncio.sleep(0.2)
    return count


async def test_rows_are_found_by_their_own_partition_fields_only(
    milvus_server: MilvusServer,
) -> None:
    """Every row is the nearest hit of a search for its own vector and partition fields, and
    no search returns a row of another namespace or tenant; rewriting rows replaces them."""
    store = MilvusVectorStore(milvus_server.uri, None, "iso" + uuid.uuid4().hex[:12], 8)
    await asyncio.wait_for(store.connect(), 60)
    try:
        now = time.time()
        rng = np.random.default_rng(7)
        vectors = rng.normal(size=(48, 8)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # inner product: cosine
        rows = [
            VectorRow(_entry(namespace, tenant, now), vectors[i])
            for i, (namespace, tenant) in enumerate(
                (n, t) for n in ("alpha", "beta") for t in ("t1", "t2") for _ in range(12)
            )
        ]
        for _ in range(2):  # the second write replaces every row
            await store.insert(rows)
        assert await _until_count(store, "alpha", 24) == 24
        assert await _until_count(store, "beta", 24) == 24
        for row in rows:
            entry = row.entry
            assert entry.partition is not None
            hits = await store.nearest(
                VectorQuery(entry.namespace, entry.tenant, entry.partition, row.vector, 4, now)
            )
            assert hits
            assert hits[0].entry_id == entry.entry_id
            assert {(h.namespace, h.tenant, h.partition) for h in hits} == {
                (entry.namespace, entry.tenant, entry.partition)
            }
        assert await store.delete_scope(InvalidationScope(namespace="alpha")) == 24
        assert await _until_count(store, "alpha", 0) == 0
        assert await store.count("beta") == 24
    finally:
        await store.close()
