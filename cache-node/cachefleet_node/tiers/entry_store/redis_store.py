"""The fleet's entry store: entries as Redis strings with a TTL, a per-namespace expiry
index, hit ranking and tag sets (keys in `cachefleet_contract.keyspace`).

Works on one Redis and on a Redis Cluster alike: every pipelined command touches one key,
multi-key reads and deletes (MGET, EXISTS, UNLINK) are split per slot by the cluster client
(`cachefleet_node.redis_clients`), and SCAN walks every master.

`put` calls are coalesced (`WriteBatcher`): the entries of concurrent write-backs go out in
one pipeline, and each index key (expiry index, hit ranking, registry, tag set) gets one
command per pipeline, not one per entry: the client's per-command work was most of a write's
cost."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import Pipeline

from cachefleet_contract import keyspace
from cachefleet_node.core.entry import CacheEntry, EntryFormatError
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.tiers.entry_store.base import BATCH, EntryRef, live_entries
from cachefleet_node.tiers.write_batch import RETRY_WRITES_FOR_S, WriteBatcher

__all__ = ["RedisEntryStore"]

WRITE_BATCH_ENTRIES = 256  # entries one coalesced pipeline takes (a larger call goes alone)
WRITE_QUEUE_ENTRIES = 8 * WRITE_BATCH_ENTRIES  # entries that may wait for a slow Redis
CLOSE_TIMEOUT_S = 15.0  # longest wait for the queued writes at close
#: Errors after which a write may land when sent again: Redis stopped, hung, restarted, or a
#: cluster is failing over (not a command Redis refused). Writes are idempotent (SET, ZADD,
#: SADD, EXPIRE of the same values).
RETRYABLE_WRITE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    OSError,
    TimeoutError,
)


class RedisEntryStore:
    """Entries as Redis strings with a TTL; a per-namespace expiry index and tag sets."""

    name = "redis"

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self.corrupt_entries = 0
        self.writes = WriteBatcher[CacheEntry](
            "redis",
            self.put_many,
            WRITE_BATCH_ENTRIES,
            WRITE_QUEUE_ENTRIES,
            retry_for_s=RETRY_WRITES_FOR_S,
            retryable=lambda exc: isinstance(exc, RETRYABLE_WRITE_ERRORS),
        )

    async def get(self, namespace: str, tenant: str, entry_id: str) -> CacheEntry | None:
        key = keyspace.entry_key(self._prefix, namespace, tenant, entry_id)
        data = await self._redis.get(key)
        if data is None:
            return None
        try:
            return CacheEntry.from_bytes(_as_bytes(data))
        except EntryFormatError:
            self.corrupt_entries += 1
            await self._remove(namespace, [key])
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
            await self._remove(namespace, corrupt)
        return entries

    async def put(self, entry: CacheEntry) -> None:
        """Write one entry, in the next coalesced pipeline (raises that pipeline's error)."""
        await self.writes.write([entry])

    def put_later(self, entry: CacheEntry) -> bool:
        """Queue an entry for Redis without waiting (it is written, and retried, once Redis
        answers again); False if the write queue is full."""
        return self.writes.enqueue([entry])

    async def put_many(self, entries: Sequence[CacheEntry]) -> None:
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        by_namespace: dict[str, dict[str, CacheEntry]] = {}  # key -> entry (the last wins)
        for entry in entries:
            ttl_ms = int((entry.expires_at - now) * 1000)
            if ttl_ms > 0:
                key = keyspace.entry_key(
                    self._prefix, entry.namespace, entry.tenant, entry.entry_id
                )
                pipe.set(key, entry.to_bytes(), px=ttl_ms)
                by_namespace.setdefault(entry.namespace, {})[key] = entry
        if not by_namespace:
            return
        for namespace, written in by_namespace.items():
            self._queue_indexes(pipe, namespace, written, now)
        await pipe.execute()
        for namespace, written in sorted(by_namespace.items()):
            if random.random() < 0.01 * len(written):
                await self._prune(namespace, now)

    def _queue_indexes(
        self, pipe: Pipeline, namespace: str, written: dict[str, CacheEntry], now: float
    ) -> None:
        """Index the namespace's entries just written: one command per index key."""
        index = keyspace.index_key(self._prefix, namespace)
        hits = keyspace.hits_key(self._prefix, namespace)
        registry = keyspace.namespaces_key(self._prefix)
        latest = max(entry.expires_at for entry in written.values())
        pipe.zadd(index, {key: entry.expires_at for key, entry in written.items()})
        # NX: a replaced entry keeps its hits; a new one enters the ranking with none.
        ranks = {key: keyspace.hit_score(0, entry.created_at) for key, entry in written.items()}
        pipe.zadd(hits, ranks, nx=True)
        pipe.zadd(registry, {namespace: latest}, gt=True)
        keep_until = dict.fromkeys((index, hits, registry), latest)
        for key, entry in written.items():
            for tag in entry.tags:
                tag_key = keyspace.tag_key(self._prefix, namespace, tag)
                pipe.sadd(tag_key, key)
                keep_until[tag_key] = max(keep_until.get(tag_key, 0.0), entry.expires_at)
        # NX gives a fresh key a TTL, GT only ever extends it: indexes outlive their entries.
        for index_like, until in keep_until.items():
            keep_s = int(until - now) + 60
            pipe.expire(index_like, keep_s, nx=True)
            pipe.expire(index_like, keep_s, gt=True)

    async def _prune(self, namespace: str, now: float) -> None:
        """Drop expired entries from the namespace's index and hit ranking."""
        index = keyspace.index_key(self._prefix, namespace)
        expired = await self._redis.zrangebyscore(index, "-inf", now, start=0, num=BATCH)
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
            for start in range(0, len(keys), BATCH):
                yield keys[start : start + BATCH]
            return
        pattern = keyspace.entry_pattern(self._prefix, scope.namespace, scope.tenant)
        batch: list[str] = []
        async for raw_key in self._redis.scan_iter(match=pattern, count=BATCH):
            batch.append(raw_key.decode() if isinstance(raw_key, bytes) else raw_key)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _remove(self, namespace: str, keys: list[str], tags: Iterable[str] = ()) -> int:
        """Delete entry keys and their index, ranking and tag memberships; the count deleted.

        UNLINK runs on its own (a cluster client splits it per slot); the other commands each
        touch one key, so their pipeline works on a cluster too."""
        removed = int(await self._redis.unlink(*keys))
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(keyspace.index_key(self._prefix, namespace), *keys)
        pipe.zrem(keyspace.hits_key(self._prefix, namespace), *keys)
        for tag in tags:
            pipe.srem(keyspace.tag_key(self._prefix, namespace, tag), *keys)
        await pipe.execute()
        return removed

    async def delete_scope(self, scope: InvalidationScope, *, dry_run: bool = False) -> int:
        removed = 0
        if not dry_run:  # a queued (or retried) write must not bring an entry back
            self.writes.discard(
                lambda e: scope.matches(e.namespace, e.tenant, e.tags, e.created_at, e.entry_id)
            )
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
            removed += await self._remove(scope.namespace, keys, scope.tags)
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
        async for raw_key in self._redis.scan_iter(match=pattern, count=BATCH):
            doomed.append(raw_key.decode() if isinstance(raw_key, bytes) else raw_key)
        for start in range(0, len(doomed), BATCH):
            await self._redis.unlink(*doomed[start : start + BATCH])
        await self._redis.zrem(keyspace.namespaces_key(self._prefix), namespace)

    async def delete_entries(
        self, namespace: str, refs: Iterable[EntryRef], *, dry_run: bool = False
    ) -> int:
        refs = list(refs)
        keys = [keyspace.entry_key(self._prefix, namespace, t, e) for t, e in refs]
        if not dry_run:
            doomed = set(refs)
            self.writes.discard(
                lambda e: e.namespace == namespace and (e.tenant, e.entry_id) in doomed
            )
        removed = 0
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            if dry_run:
                removed += int(await self._redis.exists(*batch))
                continue
            tags: set[str] = set()
            for blob in await self._redis.mget(batch):
                if blob is not None:
                    with contextlib.suppress(EntryFormatError):
                        tags.update(CacheEntry.from_bytes(_as_bytes(blob)).tags)
            removed += await self._remove(namespace, batch, sorted(tags))
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
        blobs = await self._redis.mget(keys)
        return live_entries((_as_bytes(b) for b in blobs if b is not None), time.time())

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
        """Write the queued entries (the client is owned by the caller)."""
        await self.writes.drain(CLOSE_TIMEOUT_S)


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _as_text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _created_at(blob: bytes) -> float:
    try:
        return CacheEntry.from_bytes(blob).created_at
    except EntryFormatError:
        return float("-inf")  # unreadable entries are always in scope
