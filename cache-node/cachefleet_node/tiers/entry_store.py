"""L2 exact tier: where entries (payloads) are stored once and shared.

`RedisEntryStore` is the fleet store (all nodes share it). `LocalEntryStore` is the embedded
default for a single node without Redis: a SQLite file beside the Milvus Lite file, so the
node keeps its answers across restarts with no extra service.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from cachefleet_node import keyspace
from cachefleet_node.core.entry import CacheEntry, EntryFormatError
from cachefleet_node.core.scope import InvalidationScope

__all__ = ["EntryRef", "EntryStore", "LocalEntryStore", "RedisEntryStore"]

_BATCH = 500

# (tenant, entry id): what, with the namespace, names one entry in every store.
EntryRef = tuple[str, str]


class EntryStore(Protocol):
    """Shared storage of cache entries."""

    name: str

    async def get(self, namespace: str, tenant: str, entry_id: str) -> CacheEntry | None:
        """The entry, or None if absent, expired or unreadable."""

    async def get_many(
        self, namespace: str, tenant: str, entry_ids: Sequence[str]
    ) -> list[CacheEntry | None]:
        """`get` of several entries of one tenant in one round trip, in the order asked."""

    async def put(self, entry: CacheEntry) -> None:
        """Store (or replace) an entry until its expiry."""

    async def put_many(self, entries: Sequence[CacheEntry]) -> None:
        """`put` of several entries in one round trip."""

    async def delete_scope(self, scope: InvalidationScope, *, dry_run: bool = False) -> int:
        """Delete the entries in scope (or only count them); return how many."""

    async def count(self, namespace: str) -> int:
        """Live entries of a namespace (approximate where the backend evicts)."""

    async def namespaces(self) -> list[str]:
        """Cache namespaces that hold live entries."""

    async def add_hits(
        self, namespace: str, hits: Mapping[EntryRef, int], keep_until: float
    ) -> None:
        """Add served hits to entries' fleet-wide counts (entries that are gone are ignored)."""

    async def top_entries(self, namespace: str, offset: int, limit: int) -> list[CacheEntry]:
        """Live entries at positions [offset, offset+limit) of the namespace's ranking by hits
        (descending; ties newest first). Positions of expired entries not yet purged count
        but yield nothing, so positions stay stable while entries expire."""

    async def ranked_count(self, namespace: str) -> int:
        """Positions in the namespace's hit ranking (`top_entries` ends there)."""

    async def scan_entries(
        self, namespace: str, cursor: str, limit: int
    ) -> tuple[list[CacheEntry], str]:
        """About `limit` live entries from `cursor` ("" starts) in a stable order, and the
        cursor to go on from ("" at the end). The cursor survives restarts and concurrent
        writes (every entry present throughout is returned at least once). `ValueError`
        for a cursor this store did not make."""

    async def delete_entries(
        self, namespace: str, refs: Iterable[EntryRef], *, dry_run: bool = False
    ) -> int:
        """Delete (or count) these entries; return how many existed."""

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

    async def get_many(
        self, namespace: str, tenant: str, entry_ids: Sequence[str]
    ) -> list[CacheEntry | None]:
        if not entry_ids:
            return []
        keys = [keyspace.entry_key(self._prefix, namespace, tenant, e) for e in entry_ids]
        entries: list[CacheEntry | None] = []
        corrupt = []
        for key, blob in zip(keys, await self._redis.mget(keys), strict=True):
            entry = None
            if blob is not None:
                try:
                    entry = CacheEntry.from_bytes(_as_bytes(blob))
                except EntryFormatError:
                    corrupt.append(key)
            entries.append(entry)
        if corrupt:
            self.corrupt_entries += len(corrupt)
            pipe = self._redis.pipeline(transaction=False)
            pipe.unlink(*corrupt)
            pipe.zrem(keyspace.index_key(self._prefix, namespace), *corrupt)
            await pipe.execute()
        return entries

    async def put(self, entry: CacheEntry) -> None:
        await self.put_many([entry])

    async def put_many(self, entries: Sequence[CacheEntry]) -> None:
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        namespaces = set()
        for entry in entries:
            ttl_ms = int((entry.expires_at - now) * 1000)
            if ttl_ms > 0:
                self._queue_put(pipe, entry, ttl_ms)
                namespaces.add(entry.namespace)
        if not namespaces:
            return
        await pipe.execute()
        for namespace in sorted(namespaces):
            if random.random() < 0.01:
                await self._prune(namespace, now)

    def _queue_put(self, pipe: Pipeline, entry: CacheEntry, ttl_ms: int) -> None:
        key = keyspace.entry_key(self._prefix, entry.namespace, entry.tenant, entry.entry_id)
        index = keyspace.index_key(self._prefix, entry.namespace)
        hits = keyspace.hits_key(self._prefix, entry.namespace)
        registry = keyspace.namespaces_key(self._prefix)
        keep_s = ttl_ms // 1000 + 60
        pipe.set(key, entry.to_bytes(), px=ttl_ms)
        pipe.zadd(index, {key: entry.expires_at})
        # NX: a replaced entry keeps its hits; a new one enters the ranking with none.
        pipe.zadd(hits, {key: keyspace.hit_score(0, entry.created_at)}, nx=True)
        pipe.zadd(registry, {entry.namespace: entry.expires_at}, gt=True)
        # NX gives a fresh key a TTL, GT only ever extends it: indexes outlive their entries.
        for index_like in (index, hits, registry):
            pipe.expire(index_like, keep_s, nx=True)
            pipe.expire(index_like, keep_s, gt=True)
        for tag in entry.tags:
            tag_key = keyspace.tag_key(self._prefix, entry.namespace, tag)
            pipe.sadd(tag_key, key)
            pipe.expire(tag_key, keep_s, nx=True)
            pipe.expire(tag_key, keep_s, gt=True)

    async def _prune(self, namespace: str, now: float) -> None:
        """Drop expired entries from the namespace's index and hit ranking."""
        index = keyspace.index_key(self._prefix, namespace)
        expired = await self._redis.zrangebyscore(index, "-inf", now, start=0, num=_BATCH)
        if expired:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrem(keyspace.hits_key(self._prefix, namespace), *expired)
            pipe.zrem(index, *expired)
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
            pipe.zrem(keyspace.hits_key(self._prefix, scope.namespace), *keys)
            for tag in scope.tags:
                pipe.srem(keyspace.tag_key(self._prefix, scope.namespace, tag), *keys)
            results = await pipe.execute()
            removed += int(results[0])
        if scope.whole_namespace and not dry_run:
            await self._drop_namespace_keys(scope.namespace)
        return removed

    async def _drop_namespace_keys(self, namespace: str) -> None:
        """After a whole-namespace purge: its index, hit ranking, tag sets, registry entry."""
        doomed = [
            keyspace.index_key(self._prefix, namespace),
            keyspace.hits_key(self._prefix, namespace),
        ]
        pattern = keyspace.tag_key(self._prefix, namespace, "*")
        async for raw_key in self._redis.scan_iter(match=pattern, count=_BATCH):
            doomed.append(raw_key.decode() if isinstance(raw_key, bytes) else raw_key)
        pipe = self._redis.pipeline(transaction=False)
        for start in range(0, len(doomed), _BATCH):
            pipe.unlink(*doomed[start : start + _BATCH])
        pipe.zrem(keyspace.namespaces_key(self._prefix), namespace)
        await pipe.execute()

    async def delete_entries(
        self, namespace: str, refs: Iterable[EntryRef], *, dry_run: bool = False
    ) -> int:
        keys = [keyspace.entry_key(self._prefix, namespace, t, e) for t, e in refs]
        removed = 0
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            if dry_run:
                removed += int(await self._redis.exists(*batch))
                continue
            tags: set[str] = set()
            for blob in await self._redis.mget(batch):
                if blob is not None:
                    with contextlib.suppress(EntryFormatError):
                        tags.update(CacheEntry.from_bytes(_as_bytes(blob)).tags)
            pipe = self._redis.pipeline(transaction=False)
            pipe.unlink(*batch)
            pipe.zrem(keyspace.index_key(self._prefix, namespace), *batch)
            pipe.zrem(keyspace.hits_key(self._prefix, namespace), *batch)
            for tag in sorted(tags):
                pipe.srem(keyspace.tag_key(self._prefix, namespace, tag), *batch)
            removed += int((await pipe.execute())[0])
        return removed

    async def count(self, namespace: str) -> int:
        index = keyspace.index_key(self._prefix, namespace)
        return int(await self._redis.zcount(index, time.time(), "+inf"))

    async def namespaces(self) -> list[str]:
        registry = keyspace.namespaces_key(self._prefix)
        raw = await self._redis.zrangebyscore(registry, time.time(), "+inf")
        return sorted(_as_text(item) for item in raw)

    async def add_hits(
        self, namespace: str, hits: Mapping[EntryRef, int], keep_until: float
    ) -> None:
        if not hits:
            return
        key = keyspace.hits_key(self._prefix, namespace)
        pipe = self._redis.pipeline(transaction=False)
        for (tenant, entry_id), count in hits.items():
            member = keyspace.entry_key(self._prefix, namespace, tenant, entry_id)
            # XX: only entries still ranked; a late flush never revives a purged namespace.
            pipe.zadd(key, {member: count}, xx=True, incr=True)
        keep_s = int(keep_until - time.time()) + 60
        if keep_s > 0:
            pipe.expire(key, keep_s, gt=True)
        await pipe.execute()

    async def _decode_live(self, keys: list[str]) -> list[CacheEntry]:
        if not keys:
            return []
        now = time.time()
        entries = []
        for blob in await self._redis.mget(keys):
            if blob is None:
                continue
            try:
                entry = CacheEntry.from_bytes(_as_bytes(blob))
            except EntryFormatError:
                continue
            if entry.is_fresh(now):
                entries.append(entry)
        return entries

    async def top_entries(self, namespace: str, offset: int, limit: int) -> list[CacheEntry]:
        if limit <= 0:
            return []
        key = keyspace.hits_key(self._prefix, namespace)
        members = await self._redis.zrevrange(key, offset, offset + limit - 1)
        return await self._decode_live([_as_text(m) for m in members])

    async def ranked_count(self, namespace: str) -> int:
        return int(await self._redis.zcard(keyspace.hits_key(self._prefix, namespace)))

    async def scan_entries(
        self, namespace: str, cursor: str, limit: int
    ) -> tuple[list[CacheEntry], str]:
        if cursor and not cursor.isdigit():
            raise ValueError("not a cursor of the Redis entry store")
        index = keyspace.index_key(self._prefix, namespace)
        # ZSCAN over the namespace's index: resumable from its cursor alone (across restarts),
        # and every member present for the whole iteration is returned at least once.
        next_cursor, members = await self._redis.zscan(index, int(cursor or 0), count=limit)
        now = time.time()
        keys = [_as_text(member) for member, expires in members if float(expires) > now]
        entries = await self._decode_live(keys)
        return entries, "" if int(next_cursor) == 0 else str(next_cursor)

    async def close(self) -> None:
        return None  # the client is owned by the caller


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _as_text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(entries)")}
            if "hits" not in columns:  # files written before hit counts existed
                self._db.execute("ALTER TABLE entries ADD COLUMN hits INTEGER NOT NULL DEFAULT 0")
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS by_hits ON entries (namespace, hits DESC, created DESC)"
            )

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

    def _get_many(
        self, namespace: str, tenant: str, entry_ids: Sequence[str]
    ) -> list[CacheEntry | None]:
        found: dict[str, CacheEntry] = {}
        now = time.time()
        with self._lock:
            for start in range(0, len(entry_ids), _BATCH):
                batch = list(entry_ids[start : start + _BATCH])
                marks = ",".join("?" * len(batch))
                query = (  # placeholders only
                    "SELECT entry_id, blob FROM entries WHERE namespace=? AND tenant=?"  # noqa: S608
                    f" AND expires>? AND entry_id IN ({marks})"
                )
                rows = self._db.execute(query, (namespace, tenant, now, *batch)).fetchall()
                for entry_id, blob in rows:
                    with contextlib.suppress(EntryFormatError):
                        found[str(entry_id)] = CacheEntry.from_bytes(blob)
        return [found.get(entry_id) for entry_id in entry_ids]

    async def get_many(
        self, namespace: str, tenant: str, entry_ids: Sequence[str]
    ) -> list[CacheEntry | None]:
        if not entry_ids:
            return []
        return await asyncio.to_thread(self._get_many, namespace, tenant, list(entry_ids))

    def _put_many(self, entries: Sequence[CacheEntry]) -> None:
        rows = [
            (
                entry.namespace,
                entry.tenant,
                entry.entry_id,
                entry.created_at,
                entry.expires_at,
                "," + ",".join(entry.tags) + ",",
                entry.to_bytes(),
            )
            for entry in entries
        ]
        with self._lock:
            self._db.execute("BEGIN")  # one transaction for the batch (autocommit otherwise)
            try:
                # An upsert, not INSERT OR REPLACE: a replaced entry keeps its hit count.
                self._db.executemany(
                    "INSERT INTO entries"
                    " (namespace, tenant, entry_id, created, expires, tags, blob)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (namespace, tenant, entry_id) DO UPDATE SET"
                    " created=excluded.created, expires=excluded.expires, tags=excluded.tags,"
                    " blob=excluded.blob",
                    rows,
                )
                if random.random() < 0.01:
                    self._db.execute("DELETE FROM entries WHERE expires<=?", (time.time(),))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    async def put(self, entry: CacheEntry) -> None:
        await asyncio.to_thread(self._put_many, [entry])

    async def put_many(self, entries: Sequence[CacheEntry]) -> None:
        if entries:
            await asyncio.to_thread(self._put_many, list(entries))

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

    def _namespaces(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT namespace FROM entries WHERE expires>? ORDER BY namespace",
                (time.time(),),
            ).fetchall()
        return [str(row[0]) for row in rows]

    async def namespaces(self) -> list[str]:
        return await asyncio.to_thread(self._namespaces)

    def _add_hits(self, namespace: str, hits: Mapping[EntryRef, int]) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE entries SET hits=hits+? WHERE namespace=? AND tenant=? AND entry_id=?",
                [
                    (count, namespace, tenant, entry_id)
                    for (tenant, entry_id), count in hits.items()
                ],
            )

    async def add_hits(
        self, namespace: str, hits: Mapping[EntryRef, int], keep_until: float
    ) -> None:
        if hits:
            await asyncio.to_thread(self._add_hits, namespace, dict(hits))

    @staticmethod
    def _decode_live(blobs: Iterable[bytes]) -> list[CacheEntry]:
        now = time.time()
        entries = []
        for blob in blobs:
            try:
                entry = CacheEntry.from_bytes(blob)
            except EntryFormatError:
                continue
            if entry.is_fresh(now):
                entries.append(entry)
        return entries

    def _top_entries(self, namespace: str, offset: int, limit: int) -> list[CacheEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT blob FROM entries WHERE namespace=?"
                " ORDER BY hits DESC, created DESC, tenant, entry_id LIMIT ? OFFSET ?",
                (namespace, limit, offset),
            ).fetchall()
        return self._decode_live(row[0] for row in rows)

    async def top_entries(self, namespace: str, offset: int, limit: int) -> list[CacheEntry]:
        if limit <= 0:
            return []
        return await asyncio.to_thread(self._top_entries, namespace, offset, limit)

    def _ranked_count(self, namespace: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM entries WHERE namespace=?", (namespace,)
            ).fetchone()
        return int(row[0])

    async def ranked_count(self, namespace: str) -> int:
        return await asyncio.to_thread(self._ranked_count, namespace)

    def _scan_entries(
        self, namespace: str, cursor: str, limit: int
    ) -> tuple[list[CacheEntry], str]:
        # Primary-key order from the last (tenant, entry id) seen: stable and restartable.
        after = ("", "")
        if cursor:
            tenant, sep, entry_id = cursor.partition(":")
            if not sep or not entry_id:
                raise ValueError("not a cursor of the local entry store")
            after = (tenant, entry_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT tenant, entry_id, blob FROM entries"
                " WHERE namespace=? AND (tenant, entry_id) > (?, ?)"
                " ORDER BY tenant, entry_id LIMIT ?",
                (namespace, *after, limit),
            ).fetchall()
        next_cursor = f"{rows[-1][0]}:{rows[-1][1]}" if len(rows) == limit else ""
        return self._decode_live(row[2] for row in rows), next_cursor

    async def scan_entries(
        self, namespace: str, cursor: str, limit: int
    ) -> tuple[list[CacheEntry], str]:
        return await asyncio.to_thread(self._scan_entries, namespace, cursor, limit)

    def _delete_entries(self, namespace: str, refs: list[EntryRef], dry_run: bool) -> int:
        now = time.time()
        removed = 0
        with self._lock:
            for tenant, entry_id in refs:
                args = (namespace, tenant, entry_id)
                if dry_run:
                    row = self._db.execute(
                        "SELECT COUNT(*) FROM entries"
                        " WHERE namespace=? AND tenant=? AND entry_id=? AND expires>?",
                        (*args, now),
                    ).fetchone()
                    removed += int(row[0])
                    continue
                cursor = self._db.execute(
                    "DELETE FROM entries WHERE namespace=? AND tenant=? AND entry_id=?", args
                )
                removed += int(cursor.rowcount)
        return removed

    async def delete_entries(
        self, namespace: str, refs: Iterable[EntryRef], *, dry_run: bool = False
    ) -> int:
        return await asyncio.to_thread(self._delete_entries, namespace, list(refs), dry_run)

    async def close(self) -> None:
        with self._lock:
            self._db.close()
