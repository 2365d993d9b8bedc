"""Per-namespace request counters: node-local, and fleet-wide through Redis."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import redis.asyncio as aioredis

from cachefleet_contract import keyspace
from cachefleet_contract.admin import Counters

__all__ = ["HitCounter", "NamespaceStats", "PendingHits"]

MAX_PENDING_HIT_ENTRIES = 100_000


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
        tier = {"hit-exact": "hits_exact", "hit-semantic": "hits_semantic", "miss": "misses"}
        delta = Counters.model_validate(
            {
                "requests": 1,
                tier.get(result, "bypasses"): 1,
                "prompt_tokens_saved": prompt_tokens_saved,
                "completion_tokens_saved": completion_tokens_saved,
                "cost_saved_dollars": cost_saved,
            }
        )
        self.totals[namespace] += delta
        self._pending[namespace] += delta

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
                for name in Counters.model_fields:
                    value = getattr(delta, name)
                    if not value:
                        continue
                    if isinstance(value, float):
                        pipe.hincrbyfloat(key, name, value)
                    else:
                        pipe.hincrby(key, name, value)
                pipe.expire(key, keyspace.FLEET_STATE_TTL_S)  # after: the key exists now
            await pipe.execute()
        except Exception:
            for namespace, delta in pending.items():
                self._pending[namespace] += delta
            raise

    @staticmethod
    async def fleet(client: aioredis.Redis, prefix: str, namespace: str) -> Counters:
        """Fleet-wide counters of a namespace (from its Redis hash: text numbers)."""
        raw = await client.hgetall(keyspace.stats_key(prefix, namespace))
        values = {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}
        return Counters.model_validate(
            {name: values[name] for name in Counters.model_fields if name in values}
        )


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
