"""L2 exact tier: where entries (payloads) are stored once and shared.

`RedisEntryStore` is the fleet store (all nodes share it). `LocalEntryStore` is the embedded
default for a single node without Redis: a SQLite file beside the Milvus Lite file, so the
node keeps its answers across restarts with no extra service.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis

from cachefleet_node import keyspace
from cachefleet_node.core.entry import CacheEntry, EntryFormatError
from cachefleet_node.core.scope import InvalidationScope

__all__ = ["EntryStore", "LocalEntryStore", "RedisEntryStore"]

_BATCH = 500


class EntryStore(Protocol):
    """Shared storage of cache entries."""

    name: str

    async def get(self, namespace: str, tenant: str, entry_id: str) -> CacheEntry | None:
        """The entry, or None if absent, expired or unreadable."""

    async def put(self, entry: CacheEntry) -> None:
        """Store (or replace) an entry until its expiry."""

    async def delete_scope(self, scope: InvalidationScope, *, dry_run: bool = False) -> int:
        """Delete the entries in scope (or only count them); return how many."""

    async def count(self, namespace: str) -> int:
        """Live entries of a namespace (approximate where the backend evicts)."""

    async def close(self) -> None:
        """Release connections."""


class RedisEntryStore:
    """Entries as Redis strings with a TTL; a per-namespace expiry index and tag sets."""

    name = "redis"

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self.corrupt_entries = 0

    async def get(self, namespace: str, tenant: str, entry_id: str) -> CacheEntry | None:
        key = keyspace.entry_key(self._prefix, namespace, tenant, entry_id)
        data = await self._redis.get(key)
        if data is None:
            return None
        try:
            return CacheEntry.from_bytes(_as_bytes(data))
        except EntryFormatError:
            self.corrupt_entries += 1
            pipe = self._redis.pipeline(transaction=False)
            pipe.unlink(key)
            pipe.zrem(keyspace.index_key(self._prefix, namespace), key)
            await pipe.execute()
            return None

    async def put(self, entry: CacheEntry) -> None:
        now = time.time()
        ttl_ms = int((entry.expires_at - now) * 1000)
        if ttl_ms <= 0:
            return
        key = keyspace.entry_key(self._prefix, entry.namespace, entry.tenant, entry.entry_id)
        index = keyspace.index_key(self._prefix, entry.namespace)
        keep_s = ttl_ms // 1000 + 60
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, entry.to_bytes(), px=ttl_ms)
        pipe.zadd(index, {key: entry.expires_at})
        # NX gives a fresh index a TTL, GT only ever extends it: the index outlives its entries.
        pipe.expire(index, keep_s, nx=True)
        pipe.expire(index, keep_s, gt=True)
        for tag in entry.tags:
            tag_key = keyspace.tag_key(self._prefix, entry.namespace, tag)
            pipe.sadd(tag_key, key)
            pipe.expire(tag_key, keep_s, nx=True)
            pipe.expire(tag_key, keep_s, gt=True)
        if random.random() < 0.01:
            pipe.zremrangebyscore(index, "-inf", now)
        await pipe.execute()

    async def _candidate_keys(self, scope: InvalidationScope) -> AsyncIterator[list[str]]:
        if scope.tags:
            members: set[str] = set()
            for tag in scope.tags:
                raw = await self._redis.smembers(
                    keyspace.tag_key(self._prefix, scope.namespace, tag)
                )
                members.update(m.decode() if isinstance(m, bytes) else m for m in raw)
            keys = sorted(members)
            for start in range(0, len(keys), _BATCH):
                yield keys[start : start + _BATCH]
            return
        pattern = keyspace.entry_pattern(self._prefix, scope.namespace, scope.tenant)
        batch: list[str] = []
        async for raw_key in self._redis.scan_iter(match=pattern, count=_BATCH):
            batch.append(raw_key.decode() if isinstance(raw_key, bytes) else raw_key)
            if len(batch) >= _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def delete_scope(self, scope: InvalidationScope, *, dry_run: bool = False) -> int:
        removed = 0
        index = keyspace.index_key(self._prefix, scope.namespace)
        tenant_prefix = (
            keyspace.entry_key(self._prefix, scope.namespace, scope.tenant, "")
            if scope.tenant
            else None
        )
        async for keys in self._candidate_keys(scope):
            if tenant_prefix is not None:
                keys = [k for k in keys if k.startswith(tenant_prefix)]
            if scope.created_before is not None and keys:
                blobs = await self._redis.mget(keys)
                keys = [
                    key
                    for key, blob in zip(keys, blobs, strict=True)
                    if blob is not None and _created_at(_as_bytes(blob)) < scope.created_before
                ]
            if not keys:
                continue
            if dry_run:
                removed += int(await self._redis.exists(*keys))
                continue
            pipe = self._redis.pipeline(transaction=False)
            pipe.unlink(*keys)
            pipe.zrem(index, *keys)
            for tag in scope.tags:
                pipe.srem(keyspace.tag_key(self._prefix, scope.namespace, tag), *keys)
            results = await pipe.execute()
            removed += int(results[0])
        return removed

    async def count(self, namespace: str) -> int:
        index = keyspace.index_key(self._prefix, namespace)
        return int(await self._redis.zcount(index, time.time(), "+inf"))

    async def close(self) -> None:
        return None  # the client is owned by the caller


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _created_at(blob: bytes) -> float:
    try:
        return CacheEntry.from_bytes(blob).created_at
    except EntryFormatError:
        return float("-inf")  # unreadable entries are always in scope


class LocalEntryStore:
    """Entries in a SQLite file (embedded single-node mode). Calls run in a worker thread."""

    name = "local"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries ("
                " namespace TEXT NOT NULL, tenant TEXT NOT NULL, entry_id TEXT NOT NULL,"
                " created REAL NOT NULL, expires REAL NOT NULL, tags TEXT NOT NULL,"
                " blob BLOB NOT NULL, PRIMARY KEY (namespace, tenant, entry_id))"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS by_expiry ON entries (namespace, expires)")

    def _get(self, namespace: str, tenant: str, entry_id: str) -> CacheEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT blob FROM entries"
                " WHERE namespace=? AND tenant=? AND entry_id=? AND expires>?",
                (namespace, tenant, entry_id, time.time()),
            ).fetchone()
        if row is None:
            return None
        try:
            return CacheEntry.from_bytes(row[0])
        except EntryFormatError:
            return None

    async def get(self, namespace: str, tenant: str, entry_id: str) -> CacheEntry | None:
        return await asyncio.to_thread(self._get, namespace, tenant, entry_id)

    def _put(self, entry: CacheEntry) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.namespace,
                    entry.tenant,
                    entry.entry_id,
                    entry.created_at,
                    entry.expires_at,
                    "," + ",".join(entry.tags) + ",",
                    entry.to_bytes(),
                ),
            )
            if random.random() < 0.01:
                self._db.execute("DELETE FROM entries WHERE expires<=?", (time.time(),))

    async def put(self, entry: CacheEntry) -> None:
        await asyncio.to_thread(self._put, entry)

    def _delete_scope(self, scope: InvalidationScope, dry_run: bool) -> int:
        where = ["namespace=?"]
        args: list[object] = [scope.namespace]
        if scope.tenant is not None:
            where.append("tenant=?")
            args.append(scope.tenant)
        if scope.tags:
            # instr, not LIKE: `_` (allowed in tag names) is a LIKE wildcard.
            where.append("(" + " OR ".join("instr(tags, ?) > 0" for _ in scope.tags) + ")")
            args.extend(f",{tag}," for tag in scope.tags)
        if scope.created_before is not None:
            where.append("created<?")
            args.append(scope.created_before)
        clause = " AND ".join(where)
        now = time.time()
        with self._lock:
            if dry_run:
                row = self._db.execute(
                    f"SELECT COUNT(*) FROM entries WHERE {clause} AND expires>?",  # noqa: S608
                    (*args, now),
                ).fetchone()
                return int(row[0])
            # Count only live entries (as the dry run and the Redis store do); purge the rest.
            self._db.execute(
                f"DELETE FROM entries WHERE {clause} AND expires<=?",  # noqa: S608
                (*args, now),
            )
            cursor = self._db.execute(f"DELETE FROM entries WHERE {clause}", args)  # noqa: S608
            return int(cursor.rowcount)

    async def delete_scope(self, scope: InvalidationScope, *, dry_run: bool = False) -> int:
        return await asyncio.to_thread(self._delete_scope, scope, dry_run)

    def _count(self, namespace: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM entries WHERE namespace=? AND expires>?",
                (namespace, time.time()),
            ).fetchone()
        return int(row[0])

    async def count(self, namespace: str) -> int:
        return await asyncio.to_thread(self._count, namespace)

    async def close(self) -> None:
        with self._lock:
            self._db.close()
