"""The Milvus tier against a real Milvus server: nodes of one fleet starting together."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cachefleet_bench.servers import free_port, spawn_milvus, stop
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.tiers.milvus_store import (
    SEARCHES_IN_FLIGHT,
    MilvusBusy,
    MilvusVectorStore,
    VectorRow,
)
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


def _unit_vectors(count: int, seed: int) -> npt.NDArray[np.float32]:
    vectors = np.random.default_rng(seed).normal(size=(count, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


async def _connected(uri: str, collection: str) -> MilvusVectorStore:
    store = MilvusVectorStore(uri, None, collection, 8)
    await asyncio.wait_for(store.connect(), 60)
    return store


async def test_concurrent_inserts_are_coalesced_and_all_searchable(
    milvus_server: MilvusServer,
) -> None:
    """64 writers at once (a node writing back misses) share a batch, not 64 round trips;
    every row is its own nearest hit afterwards, and of one id written twice the later wins."""
    store = await _connected(milvus_server.uri, "batch" + uuid.uuid4().hex[:12])
    try:
        now = time.time()
        vectors = _unit_vectors(65, 11)
        rows = [VectorRow(_entry("alpha", "t1", now), vectors[i]) for i in range(64)]
        await asyncio.wait_for(asyncio.gather(*(store.insert([row]) for row in rows)), 60)
        assert store.writes.items == 64
        assert store.writes.batches < 8
        # the same entry twice in one batch: one row, with the later vector
        first, second = VectorRow(rows[0].entry, vectors[64]), rows[0]
        batches = store.writes.batches
        await asyncio.wait_for(asyncio.gather(store.insert([first]), store.insert([second])), 60)
        assert store.writes.batches == batches + 1
        assert await _until_count(store, "alpha", 64) == 64
        for row in rows:
            entry = row.entry
            assert entry.partition is not None
            hits = await store.nearest(
                VectorQuery(entry.namespace, entry.tenant, entry.partition, row.vector, 4, now)
            )
            assert hits
            assert hits[0].entry_id == entry.entry_id
            assert hits[0].similarity > 0.99
    finally:
        await store.close()


async def test_close_writes_every_queued_row(milvus_server: MilvusServer) -> None:
    """Rows queued when the store closes are written before it closes (node shutdown)."""
    collection = "drain" + uuid.uuid4().hex[:12]
    store = await _connected(milvus_server.uri, collection)
    now = time.time()
    vectors = _unit_vectors(40, 12)
    writers = [
        asyncio.create_task(store.insert([VectorRow(_entry("alpha", "t1", now), vectors[i])]))
        for i in range(40)
    ]
    await asyncio.sleep(0)  # every writer has queued its row; none is written yet
    assert store.writes.items == 0
    await store.close()
    assert all(w.done() and w.exception() is None for w in writers)
    assert store.writes.items == 40
    reopened = await _connected(milvus_server.uri, collection)
    try:
        assert await _until_count(reopened, "alpha", 40) == 40
    finally:
        await reopened.close()


async def test_a_dead_server_fails_every_waiting_writer(tmp_path: Path) -> None:
    """With the server gone, each of the writers sharing a batch gets an error (or its own
    deadline), none waits forever; close then gives up on the rows in flight."""
    port = free_port()
    process = spawn_milvus(port, tmp_path / "milvus")
    try:
        store = await _connected(f"http://127.0.0.1:{port}", "dead" + uuid.uuid4().hex[:12])
    except BaseException:
        stop(process)
        raise
    try:
        stop(process)
        now = time.time()
        vectors = _unit_vectors(16, 13)
        outcomes = await asyncio.gather(
            *(
                asyncio.wait_for(
                    store.insert([VectorRow(_entry("alpha", "t1", now), vectors[i])]), 5
                )
                for i in range(16)
            ),
            return_exceptions=True,
        )
        assert all(isinstance(o, Exception) for o in outcomes), outcomes
    finally:
        await store.close()


async def test_rows_written_while_the_server_restarts_land_once_it_is_back(
    tmp_path: Path,
) -> None:
    """A restart under writes: the writers are told at once that their rows are not
    confirmed; the store sends them again, and they are all there once the server is back."""
    port, data = free_port(), tmp_path / "milvus"
    process = spawn_milvus(port, data)
    store = None
    try:
        store = await _connected(f"http://127.0.0.1:{port}", "back" + uuid.uuid4().hex[:12])
        now = time.time()
        vectors = _unit_vectors(9, 14)
        rows = [VectorRow(_entry("alpha", "t1", now), vectors[i]) for i in range(9)]
        await asyncio.wait_for(store.insert(rows[:1]), 30)
        stop(process)
        outcomes = await asyncio.gather(
            *(asyncio.wait_for(store.insert([row]), 5) for row in rows[1:]),
            return_exceptions=True,
        )
        assert all(isinstance(o, Exception) for o in outcomes), outcomes
        process = spawn_milvus(port, data)  # the same server, on its data
        deadline = time.monotonic() + 120
        while not store.connected or await store.count("alpha") < 9:
            assert time.monotonic() < deadline, (store.writes.retried, store.writes.abandoned)
            await asyncio.sleep(0.5)
        assert store.writes.retried >= 8
        assert store.writes.abandoned == 0
        for row in rows:
            hits = await store.nearest(VectorQuery("alpha", "t1", "p0", row.vector, 1, now))
            assert [hit.entry_id for hit in hits] == [row.entry.entry_id]
    finally:
        if store is not None:
            await store.close()
        stop(process)


async def test_searches_past_the_in_flight_bound_are_shed_not_queued(tmp_path: Path) -> None:
    """A hung server holds `SEARCHES_IN_FLIGHT` searches; the next lookup is shed at once
    (`MilvusBusy`) instead of queueing into its deadline, a caller that stops waiting does not
    free its slot (its call still occupies Milvus), and answered searches free them all."""
    port = free_port()
    process = spawn_milvus(port, tmp_path / "milvus")
    try:
        store = await _connected(f"http://127.0.0.1:{port}", "shed" + uuid.uuid4().hex[:12])
    except BaseException:
        stop(process)
        raise
    query = VectorQuery("alpha", "t1", "p0", _unit_vectors(1, 5)[0], 4, time.time(), None)
    try:
        process.send_signal(signal.SIGSTOP)
        hung = [asyncio.create_task(store.nearest(query)) for _ in range(SEARCHES_IN_FLIGHT)]
        await asyncio.sleep(0)
        with pytest.raises(MilvusBusy):
            await store.nearest(query)
        hung[0].cancel()  # its caller's deadline passed; the call is still at the server
        await asyncio.gather(hung[0], return_exceptions=True)
        with pytest.raises(MilvusBusy):
            await store.nearest(query)
        process.send_signal(signal.SIGCONT)
        await asyncio.gather(*hung[1:], return_exceptions=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                assert await asyncio.wait_for(store.nearest(query), 15) == []
                break
            except MilvusBusy:  # the abandoned call has not ended yet
                assert time.monotonic() < deadline, "a slot was never freed"
                await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGCONT)
        await store.close()
        stop(process)
