"""Per-namespace request counters: node-local, and fleet-wide through Redis."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import redis.asyncio as aioredis

from cachefleet_node import keyspace

__all__ = ["Counters", "HitCounter", "NamespaceStats", "PendingHits"]

MAX_PENDING_HIT_ENTRIES = 100_000


@dataclass
class Counters:
    """Monotonic counters of one namespace."""

    requests: int = 0
    hits_exact: int = 0
    hits_semantic: int = 0
    misses: int = 0
    bypasses: int = 0
    prompt_tokens_saved: int = 0
    completion_tokens_saved: int = 0
    cost_saved_dollars: float = 0.0

    def add(self, other: Counters) -> None:
        """Add another set of counters into this one."""
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def report(self) -> dict[str, Any]:
        """JSON view with the derived hit rate."""
        hits = self.hits_exact + self.hits_semantic
        data: dict[str, Any] = asdict(self)
        data["hits"] = hits
        data["hit_rate"] = round(hits / self.requests, 4) if self.requests else 0.0
        data["cost_saved_dollars"] = round(self.cost_saved_dollars, 6)
        return data

    @classmethod
    def from_redis(cls, raw: Mapping[bytes | str, bytes | str]) -> Counters:
        """Decode a Redis stats hash."""
        counters = cls()
        for item in fields(cls):
            value = raw.get(item.name.encode(), raw.get(item.name))
            if value is not None:
                kind = float if item.type in {float, "float"} else int
                setattr(counters, item.name, kind(float(value)))
        return counters


class NamespaceStats:
    """Counters per namespace since start, plus pending deltas for the fleet-wide hash."""

    def __init__(self) -> None:
        self.totals: dict[str, Counters] = defaultdict(Counters)
        self._pending: dict[str, Counters] = defaultdict(Counters)

    def record(
        self,
        namespace: str,
        result: str,
        *,
        prompt_tokens_saved: int = 0,
        completion_tokens_saved: int = 0,
        cost_saved: float = 0.0,
    ) -> None:
        """Count one request with its result (hit-exact, hit-semantic, miss, bypass)."""
        delta = Counters(requests=1)
        if result == "hit-exact":
            delta.hits_exact = 1
        elif result == "hit-semantic":
            delta.hits_semantic = 1
        elif result == "miss":
            delta.misses = 1
        else:
            delta.bypasses = 1
        delta.prompt_tokens_saved = prompt_tokens_saved
        delta.completion_tokens_saved = completion_tokens_saved
        delta.cost_saved_dollars = cost_saved
        self.totals[namespace].add(delta)
        self._pending[namespace].add(delta)

    def forget(self, namespace: str) -> None:
        """Drop a purged namespace's counters, pending deltas included."""
        self.totals.pop(namespace, None)
        self._pending.pop(namespace, None)

    async def flush(self, client: aioredis.Redis, prefix: str) -> None:
        """Add pending deltas to the fleet-wide Redis hashes (kept on failure for next time)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, defaultdict(Counters)
        try:
            pipe = client.pipeline(transaction=False)
            for namespace, delta in pending.items():
                key = keyspace.stats_key(prefix, namespace)
                for item in fields(Counters):
                    value = getattr(delta, item.name)
                    if not value:
                        continue
                    if isinstance(value, float):
                        pipe.hincrbyfloat(key, item.name, value)
                    else:
                        pipe.hincrby(key, item.name, value)
                pipe.expire(key, keyspace.FLEET_STATE_TTL_S)  # after: the key exists now
            await pipe.execute()
        except Exception:
            for namespace, delta in pending.items():
                self._pending[namespace].add(delta)
            raise

    @staticmethod
    async def fleet(client: aioredis.Redis, prefix: str, namespace: str) -> Counters:
        """Fleet-wide counters of a namespace."""
        return Counters.from_redis(await client.hgetall(keyspace.stats_key(prefix, namespace)))


@dataclass
class PendingHits:
    """Served hits of one namespace not yet written to the store."""

    counts: dict[tuple[str, str], int]  # (tenant, entry id) -> hits
    keep_until: float  # latest expiry among the counted entries


class HitCounter:
    """Per-entry served hits, batched: `record` on every hit, `take` once a second.

    Bounded: past `MAX_PENDING_HIT_ENTRIES` distinct pending entries (a store down for long),
    hits of new entries are dropped (counted in `dropped`); hit counts only rank warm-ups.
    """

    def __init__(self) -> None:
        self._pending: dict[str, PendingHits] = {}
        self._size = 0
        self.dropped = 0

    def record(
        self, namespace: str, tenant: str, entry_id: str, expires_at: float, count: int = 1
    ) -> None:
        """Count served hits of an entry."""
        pending = self._pending.get(namespace)
        if pending is None:
            pending = self._pending[namespace] = PendingHits({}, expires_at)
        key = (tenant, entry_id)
        if key not in pending.counts:
            if self._size >= MAX_PENDING_HIT_ENTRIES:
                self.dropped += 1
                return
            self._size += 1
        pending.counts[key] = pending.counts.get(key, 0) + count
        pending.keep_until = max(pending.keep_until, expires_at)

    def take(self) -> dict[str, PendingHits]:
        """Everything pending, reset; give it back with `restore` if writing it failed."""
        pending, self._pending, self._size = self._pending, {}, 0
        return pending

    def restore(self, pending: dict[str, PendingHits]) -> None:
        """Put back hits that could not be written (kept for the next flush)."""
        for namespace, item in pending.items():
            for (tenant, entry_id), count in item.counts.items():
                self.record(namespace, tenant, entry_id, item.keep_until, count)
