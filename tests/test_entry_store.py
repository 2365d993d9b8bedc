"""L2 exact tier: the Redis store and the embedded SQLite store behave the same."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from cachefleet_contract import keyspace
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.tiers.entry_store import EntryStore, LocalEntryStore, RedisEntryStore
from node_harness import RedisServer

PREFIX = "cft"


def entry(entry_id: str, **changes: Any) -> CacheEntry:
    now = time.time()
    fields: dict[str, Any] = {
        "entry_id": entry_id,
        "namespace": "support",
        "tenant": "acme",
        "model": "gpt-4o-mini",
        "created_at": now,
        "expires_at": now + 3600,
        "answers": (b'{"choices":[{"message":{"content":"' + entry_id.encode() + b'"}}]}',),
        "prompt": f"prompt {entry_id}",
        "tags": (),
    }
    fields.update(changes)
    return CacheEntry(**fields)


@pytest_asyncio.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(params=["redis", "local"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EntryStore]:
    instance: EntryStore
    client: aioredis.Redis | None = None
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        client = aioredis.Redis.from_url(server.url)
        instance = RedisEntryStore(client, PREFIX)
    else:
        instance = LocalEntryStore(tmp_path / "state" / "entries.sqlite")
    yield instance
    await instance.close()
    if client is not None:
        await client.aclose()


async def ids_present(store: EntryStore, entries: list[CacheEntry]) -> set[str]:
    found = set()
    for item in entries:
        if await store.get(item.namespace, item.tenant, item.entry_id) is not None:
            found.add(item.entry_id)
    return found


async def test_put_get_round_trip(store: EntryStore) -> None:
    original = entry("e1", tags=("billing", "faq"), partition="p" * 64, prompt_tokens=7)
    await store.put(original)
    assert await store.get("support", "acme", "e1") == original
    assert await store.get("support", "other-tenant", "e1") is None
    assert await store.get("other-ns", "acme", "e1") is None
    assert await store.get("support", "acme", "missing") is None


async def test_put_replaces(store: EntryStore) -> None:
    await store.put(entry("e1", model="a"))
    await store.put(entry("e1", model="b", tags=("x",)))
    found = await store.get("support", "acme", "e1")
    assert found is not None
    assert (found.model, found.tags) == ("b", ("x",))
    assert await store.count("support") == 1


async def test_ttl_expiry(store: EntryStore) -> None:
    now = time.time()
    await store.put(entry("short", expires_at=now + 0.3))
    await store.put(entry("long"))
    assert await store.get("support", "acme", "short") is not None
    assert await store.count("support") == 2
    await asyncio.sleep(0.45)
    assert await store.get("support", "acme", "short") is None
    assert await store.get("support", "acme", "long") is not None
    assert await store.count("support") == 1


async def test_already_expired_entry_is_never_served(store: EntryStore) -> None:
    await store.put(entry("past", expires_at=time.time() - 1))
    assert await store.get("support", "acme", "past") is None
    assert await store.count("support") == 0


def population() -> list[CacheEntry]:
    now = time.time()
    return [
        entry("a1", tenant="acme", tags=("billing",), created_at=now - 100),
        entry("a2", tenant="acme", tags=("faq",), created_at=now - 10),
        entry("a3", tenant="acme", tags=("billing", "faq"), created_at=now - 1),
        entry("a4", tenant="acme", created_at=now - 100),
        entry("g1", tenant="globex", tags=("billing",), created_at=now - 100),
        entry("g2", tenant="globex", tags=("legal",), created_at=now - 1),
        entry("s1", namespace="sales", tenant="acme", tags=("billing",), created_at=now - 100),
        entry("s2", namespace="sales", tenant="globex", created_at=now - 100),
    ]


@pytest.mark.parametrize(
    ("scope_fields", "expected"),
    [
        ({}, {"a1", "a2", "a3", "a4", "g1", "g2"}),
        ({"tenant": "acme"}, {"a1", "a2", "a3", "a4"}),
        ({"tenant": "globex"}, {"g1", "g2"}),
        ({"tenant": "nobody"}, set()),
        ({"tags": ("billing",)}, {"a1", "a3", "g1"}),
        ({"tags": ("faq", "legal")}, {"a2", "a3", "g2"}),
        ({"tags": ("unknown",)}, set()),
        ({"created_before": -50}, {"a1", "a4", "g1"}),
        ({"tenant": "acme", "tags": ("billing",)}, {"a1", "a3"}),
        ({"tenant": "acme", "created_before": -50}, {"a1", "a4"}),
        ({"tags": ("billing",), "created_before": -50}, {"a1", "g1"}),
        ({"tenant": "globex", "tags": ("billing", "legal"), "created_before": -50}, {"g1"}),
    ],
)
async def test_delete_scope(
    store: EntryStore, scope_fields: dict[str, Any], expected: set[str]
) -> None:
    entries = population()
    for item in entries:
        await store.put(item)
    fields = dict(scope_fields)
    if "created_before" in fields:
        fields["created_before"] = time.time() + fields["created_before"]
    scope = InvalidationScope(namespace="support", **fields)
    everything = {e.entry_id for e in entries}

    assert await store.delete_scope(scope, dry_run=True) == len(expected)
    assert await ids_present(store, entries) == everything

    assert await store.delete_scope(scope) == len(expected)
    assert await ids_present(store, entries) == everything - expected
    assert await store.count("support") == 6 - len(expected)
    assert await store.count("sales") == 2  # other namespaces untouched
    assert await store.delete_scope(scope) == 0


async def test_tag_names_are_matched_exactly(store: EntryStore) -> None:
    entries = [
        entry("dash", tags=("a-b",)),
        entry("dot", tags=("a.b",)),
        entry("under", tags=("a_b",)),
        entry("longer", tags=("xa_by",)),
    ]
    for item in entries:
        await store.put(item)
    scope = InvalidationScope(namespace="support", tags=("a_b",))
    assert await store.delete_scope(scope, dry_run=True) == 1
    assert await store.delete_scope(scope) == 1
    assert await ids_present(store, entries) == {"dash", "dot", "longer"}


async def test_delete_counts_only_live_entries(store: EntryStore) -> None:
    now = time.time()
    await store.put(entry("expiring", expires_at=now + 0.2))
    await store.put(entry("live"))
    await asyncio.sleep(0.3)
    scope = InvalidationScope(namespace="support")
    assert await store.delete_scope(scope, dry_run=True) == 1
    assert await store.delete_scope(scope) == 1


async def test_count_per_namespace(store: EntryStore) -> None:
    for i in range(7):
        await store.put(entry(f"e{i}", tenant=f"t{i % 3}"))
    for i in range(3):
        await store.put(entry(f"s{i}", namespace="sales"))
    assert await store.count("support") == 7
    assert await store.count("sales") == 3
    assert await store.count("empty") == 0


async def test_many_entries_delete_in_batches(store: EntryStore) -> None:
    for i in range(1200):
        await store.put(entry(f"e{i}", tenant="acme" if i % 2 else "globex", tags=("bulk",)))
    assert await store.delete_scope(InvalidationScope("support", tenant="acme")) == 600
    assert await store.delete_scope(InvalidationScope("support", tags=("bulk",))) == 600
    assert await store.count("support") == 0


async def test_hit_ranking_orders_by_hits_then_newest(store: EntryStore) -> None:
    now = time.time()
    for i in range(6):
        await store.put(entry(f"e{i}", created_at=now + i, tenant="acme" if i % 2 else "globex"))
    await store.put(entry("other", namespace="sales"))
    await store.add_hits(
        "support", {("globex", "e0"): 3, ("acme", "e3"): 3, ("acme", "e5"): 1}, now + 3600
    )
    await store.add_hits("support", {("acme", "e5"): 1, ("acme", "gone"): 9}, now + 3600)
    # e3 and e0 tie on hits: newest first; then e5 (2 hits); then the rest, newest first.
    ranked = [e.entry_id for e in await store.top_entries("support", 0, 10)]
    assert ranked == ["e3", "e0", "e5", "e4", "e2", "e1"]
    assert [e.entry_id for e in await store.top_entries("support", 2, 2)] == ["e5", "e4"]
    assert await store.top_entries("support", 6, 10) == []
    assert await store.ranked_count("support") == 6  # hits of an unknown entry are ignored
    # A replaced entry keeps its hits.
    await store.put(entry("e5", created_at=now + 5))
    assert [e.entry_id for e in await store.top_entries("support", 0, 3)] == ["e3", "e0", "e5"]
    assert await store.namespaces() == ["sales", "support"]


async def test_scan_walks_every_entry_once_from_a_resumable_cursor(store: EntryStore) -> None:
    for i in range(700):
        await store.put(entry(f"e{i:04d}", tenant=f"t{i % 3}"))
    await store.put(entry("x", namespace="sales"))
    seen: list[str] = []
    cursor = ""
    batches = 0
    while True:
        found, cursor = await store.scan_entries("support", cursor, 100)
        seen += [e.entry_id for e in found]
        batches += 1
        if not cursor:
            break
    assert sorted(seen) == sorted(f"e{i:04d}" for i in range(700))
    assert batches >= 4  # bounded batches, not one big read
    with pytest.raises(ValueError, match="cursor"):
        await store.scan_entries("support", "not:a:cursor" if store.name == "redis" else "x", 10)


async def test_delete_entries_by_id(store: EntryStore) -> None:
    items = [entry(f"e{i}", tenant="acme" if i % 2 else "globex", tags=("faq",)) for i in range(4)]
    for item in items:
        await store.put(item)
    refs = [("globex", "e0"), ("acme", "e1"), ("acme", "missing")]
    assert await store.delete_entries("support", refs, dry_run=True) == 2
    assert await ids_present(store, items) == {"e0", "e1", "e2", "e3"}
    assert await store.delete_entries("support", refs) == 2
    assert await ids_present(store, items) == {"e2", "e3"}
    assert [e.entry_id for e in await store.top_entries("support", 0, 10)] != []
    assert {e.entry_id for e in await store.top_entries("support", 0, 10)} == {"e2", "e3"}
    assert await store.delete_scope(InvalidationScope("support", tags=("faq",))) == 2


# ---------------------------------------------------------------------------- Redis only


async def test_redis_corrupt_entry_is_dropped_and_counted(redis_client: aioredis.Redis) -> None:
    store = RedisEntryStore(redis_client, PREFIX)
    key = keyspace.entry_key(PREFIX, "support", "acme", "bad")
    for garbage in (b"not json", b'{"v": 99}', b"[]"):
        await redis_client.set(key, garbage, ex=60)
        assert await store.get("support", "acme", "bad") is None
        assert await redis_client.exists(key) == 0
    assert store.corrupt_entries == 3
    await store.put(entry("good"))
    assert await store.get("support", "acme", "good") is not None
    assert store.corrupt_entries == 3


async def test_redis_corrupt_entries_are_always_in_a_created_before_scope(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisEntryStore(redis_client, PREFIX)
    await store.put(entry("good"))
    key = keyspace.entry_key(PREFIX, "support", "acme", "bad")
    await redis_client.set(key, b"garbage", ex=60)
    scope = InvalidationScope("support", created_before=time.time() - 3600)
    assert await store.delete_scope(scope) == 1
    assert await redis_client.exists(key) == 0
    assert await store.get("support", "acme", "good") is not None


async def test_redis_every_key_has_a_ttl(redis_client: aioredis.Redis) -> None:
    store = RedisEntryStore(redis_client, PREFIX)
    now = time.time()
    await store.put(entry("short", expires_at=now + 100, tags=("billing",)))
    await store.put(entry("long", expires_at=now + 1000, tags=("faq",)))
    await store.put(entry("shorter", expires_at=now + 50, tags=("billing",)))

    entry_ttl = await redis_client.pttl(keyspace.entry_key(PREFIX, "support", "acme", "long"))
    assert 990_000 < entry_ttl <= 1_000_000
    short_ttl = await redis_client.pttl(keyspace.entry_key(PREFIX, "support", "acme", "short"))
    assert 90_000 < short_ttl <= 100_000

    # Index and tag sets outlive their longest entry, and never shrink when a shorter one arrives.
    index_ttl = await redis_client.pttl(keyspace.index_key(PREFIX, "support"))
    assert 1_000_000 <= index_ttl <= 1_061_000
    billing_ttl = await redis_client.pttl(keyspace.tag_key(PREFIX, "support", "billing"))
    assert 100_000 <= billing_ttl <= 161_000
    faq_ttl = await redis_client.pttl(keyspace.tag_key(PREFIX, "support", "faq"))
    assert 1_000_000 <= faq_ttl <= 1_061_000

    async for raw in redis_client.scan_iter(match=f"{PREFIX}:*"):
        assert await redis_client.pttl(raw) > 0, raw
