"""Coalesced write-backs into the Redis entry store (real redis-server)."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import redis.exceptions

from cachefleet_contract import keyspace
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.tiers.entry_store import RedisEntryStore
from node_harness import RedisServer

PREFIX = "cfb"


def _entry(i: int, tags: tuple[str, ...] = ()) -> CacheEntry:
    now = time.time()
    return CacheEntry(
        entry_id=f"e{i}",
        namespace="support",
        tenant="acme",
        model="m",
        created_at=now + i * 0.001,
        expires_at=now + 100 + i,
        answers=(f'{{"n":{i}}}'.encode(),),
        tags=tags,
    )


@pytest_asyncio.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_server.url, socket_timeout=2)
    yield redis
    await redis.aclose()


async def test_concurrent_puts_share_pipelines_and_index_every_entry(
    client: aioredis.Redis,
) -> None:
    """64 write-backs at once go out in a few pipelines; every entry is readable, indexed,
    ranked and in its tag set, with the TTLs single writes give; of one key twice, the
    later wins."""
    store = RedisEntryStore(client, PREFIX)
    entries = [_entry(i, ("odd",) if i % 2 else ()) for i in range(64)]
    await asyncio.wait_for(asyncio.gather(*(store.put(e) for e in entries)), 30)
    assert store.writes.items == 64
    assert store.writes.batches < 8
    for e in entries:
        got = await store.get("support", "acme", e.entry_id)
        assert got is not None
        assert got.answers == e.answers
    assert await store.count("support") == 64
    assert await store.ranked_count("support") == 64
    tag_key = keyspace.tag_key(PREFIX, "support", "odd")
    assert await client.scard(tag_key) == 32
    assert 160_000 <= await client.pttl(tag_key) <= 224_000  # longest odd entry + 60 s
    index_ttl = await client.pttl(keyspace.index_key(PREFIX, "support"))
    assert 160_000 <= index_ttl <= 224_000
    replaced = dataclasses.replace(_entry(0), answers=(b'{"n":"new"}',))
    batches = store.writes.batches
    await asyncio.gather(store.put(_entry(0)), store.put(replaced))
    assert store.writes.batches == batches + 1
    got = await store.get("support", "acme", "e0")
    assert got is not None
    assert got.answers == replaced.answers
    assert await store.delete_scope(InvalidationScope("support", tags=("odd",))) == 32
    await store.close()


async def test_close_writes_every_queued_entry(client: aioredis.Redis) -> None:
    store = RedisEntryStore(client, PREFIX)
    writers = [asyncio.create_task(store.put(_entry(i))) for i in range(40)]
    await asyncio.sleep(0)  # every writer has queued its entry; none is written yet
    assert store.writes.items == 0
    await store.close()
    assert all(w.done() and w.exception() is None for w in writers)
    assert await store.count("support") == 40


async def test_a_dead_redis_fails_every_waiting_writer(
    redis_server: RedisServer, client: aioredis.Redis
) -> None:
    store = RedisEntryStore(client, PREFIX)
    await store.put(_entry(0))
    redis_server.stop()
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(store.put(_entry(i)), 5) for i in range(16)),
        return_exceptions=True,
    )
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    await store.close()


async def test_a_write_caught_by_a_paused_redis_lands_when_it_resumes(
    redis_server: RedisServer, client: aioredis.Redis
) -> None:
    """SIGSTOP while the write is in flight: its caller is told at once that it is not
    confirmed; the store sends it again, and it lands after SIGCONT (the chaos run's loss)."""
    store = RedisEntryStore(client, PREFIX)
    await store.put(_entry(0))
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises((asyncio.TimeoutError, redis.exceptions.RedisError)):
            await asyncio.wait_for(store.put(_entry(1)), 5)
        await asyncio.sleep(3)  # it stays paused past the client's 2 s socket timeout
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 30
    while await store.get("support", "acme", "e1") is None:
        assert time.monotonic() < deadline, "the failed write never landed"
        await asyncio.sleep(0.2)
    assert store.writes.retried >= 1
    assert store.writes.abandoned == 0
    await store.close()


async def test_a_write_waiting_to_be_retried_does_not_undo_an_invalidation(
    redis_server: RedisServer, client: aioredis.Redis
) -> None:
    store = RedisEntryStore(client, PREFIX)
    redis_server.stop()
    with pytest.raises((asyncio.TimeoutError, redis.exceptions.RedisError, OSError)):
        await asyncio.wait_for(store.put(_entry(7, tags=("faq",))), 5)
    assert store.writes.retried >= 1  # waiting for Redis to come back
    redis_server.start_again()
    # the invalidation reaches Redis before the retried write could
    await store.delete_scope(InvalidationScope("support", tags=("faq",)))
    await store.put(_entry(8))  # the queue moves again: anything retried went before it
    assert await store.get("support", "acme", "e7") is None
    assert await store.get("support", "acme", "e8") is not None
    await store.close()
