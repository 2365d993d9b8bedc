"""Embedding cache: in-process LRU, then Redis, then the inner embedder.

Redis keys are `keyspace.embedding_key(prefix, space, text)`; values are the vector as
little-endian float32 bytes with a TTL. Redis is best effort: an error or a call past the
deadline counts and falls through to the inner embedder, it never fails an embed.
After a Redis failure the cache skips Redis for `REDIS_COOLDOWN_S` (a dead Redis must not
cost every embed a deadline), and writes to Redis never delay the caller.
The Redis client must return bytes (`decode_responses=False`).

The in-process LRU holds each vector as its float32 bytes and charges them, the key and a
measured per-item overhead to the node's shared `MemoryBudget` (tier `embeddings`), which
evicts the least recently used item across the in-process tiers.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import redis.asyncio
import structlog
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cachefleet_contract.keyspace import embedding_key
from cachefleet_node.embedders.base import EmbedBudget, Embedder, Vectors
from cachefleet_node.memory import MemoryBudget

__all__ = ["ITEM_OVERHEAD_BYTES", "CachingEmbedder"]

log = structlog.get_logger(__name__)

_WIRE_DTYPE = np.dtype("<f4")
REDIS_COOLDOWN_S = 2.0
# Bytes a local item costs beside its vector bytes and key characters: the OrderedDict slot
# and node, the key str and bytes headers, the (vector, tick) tuple and the tick int, with
# allocator rounding (checked against process RSS by tests/test_l1_memory.py).
ITEM_OVERHEAD_BYTES = 320


class CachingEmbedder:
    """An `Embedder` that serves repeated texts from memory or Redis.

    Counters (per text): `hits_local`, `hits_redis`, `misses`; Redis failures: `redis_errors`,
    of which `redis_timeouts` went past `redis_deadline_s`; `evictions` from the local LRU.
    The local LRU holds at most `local_entries` vectors and charges `memory_budget`.
    """

    tier = "embeddings"

    def __init__(
        self,
        inner: Embedder,
        redis: redis.asyncio.Redis | None,
        key_prefix: str,
        ttl_s: int,
        local_entries: int,
        redis_deadline_s: float,
        memory_budget: MemoryBudget,
    ) -> None:
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.space = inner.space
        self.inner = inner
        self.hits_local = 0
        self.hits_redis = 0
        self.misses = 0
        self.redis_errors = 0
        self.redis_timeouts = 0
        self.evictions = 0
        self._redis = redis if ttl_s > 0 else None
        self._prefix = key_prefix
        self._ttl_s = ttl_s
        self._deadline_s = redis_deadline_s
        self._local: OrderedDict[str, tuple[bytes, int]] = OrderedDict()  # key -> (vector, tick)
        self._local_entries = local_entries
        self._local_bytes = 0
        self._budget = memory_budget
        memory_budget.register(self)
        self._redis_failing = False
        self._skip_redis_until = 0.0
        self._writes: set[asyncio.Task[None]] = set()

    async def embed(self, texts: Sequence[str], budget: EmbedBudget | None = None) -> Vectors:
        """Embed `texts`, computing only those found in neither cache (in one inner call)."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}  # key -> positions of that text
        for position, text in enumerate(texts):
            key = embedding_key(self._prefix, self.space, text)
            vector = self._local_get(key)
            if vector is None:
                missing.setdefault(key, []).append(position)
            else:
                out[position] = vector
                self.hits_local += 1
        if missing and self._redis_usable():
            for key, vector in (await self._redis_get(list(missing))).items():
                positions = missing.pop(key)
                out[positions] = vector
                self.hits_redis += len(positions)
                self._local_put(key, vector)
        if missing:
            computed = await self.inner.embed(
                [texts[positions[0]] for positions in missing.values()], budget
            )
            for (key, positions), vector in zip(missing.items(), computed, strict=True):
                out[positions] = vector
                self.misses += len(positions)
                self._local_put(key, vector)
            if self._redis_usable():
                task = asyncio.create_task(
                    self._redis_set(dict(zip(missing, computed, strict=True)))
                )
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
        return out

    def _redis_usable(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._skip_redis_until

    async def flush(self) -> None:
        """Wait for the background writes to Redis."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def aclose(self) -> None:
        """Finish pending cache writes, release the local LRU from the memory budget, close
        the inner embedder (the caller owns Redis)."""
        await self.flush()
        self._local.clear()
        self._local_bytes = 0
        self._budget.unregister(self)
        await self.inner.aclose()

    @property
    def bytes_used(self) -> int:
        """Bytes the local LRU holds (vectors, keys and per-item bookkeeping)."""
        return self._local_bytes

    def oldest_tick(self) -> int | None:
        """The tick of the least recently used vector (for the shared budget)."""
        for _, tick in self._local.values():
            return tick
        return None

    def evict_oldest(self) -> None:
        """Evict the least recently used vector (called by the shared budget)."""
        key, (blob, _) = self._local.popitem(last=False)
        self._local_bytes -= _item_size(key, blob)
        self.evictions += 1

    def _local_get(self, key: str) -> Vectors | None:
        item = self._local.get(key)
        if item is None:
            return None
        self._local[key] = (item[0], self._budget.tick())
        self._local.move_to_end(key)
        return np.frombuffer(item[0], dtype=np.float32)

    def _local_put(self, key: str, vector: Vectors) -> None:
        if self._local_entries <= 0:
            return
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        size = _item_size(key, blob)
        if not self._budget.fits(size):
            return
        old = self._local.pop(key, None)
        if old is not None:
            self._local_bytes -= _item_size(key, old[0])
        self._local[key] = (blob, self._budget.tick())
        self._local_bytes += size
        while len(self._local) > self._local_entries:
            self.evict_oldest()
        self._budget.reclaim()

    async def _redis_get(self, keys: list[str]) -> dict[str, Vectors]:
        assert self._redis is not None
        try:
            async with asyncio.timeout(self._deadline_s):
                values = await self._redis.mget(keys)
        except (RedisError, OSError) as exc:
            self._redis_failed("mget", exc)
            return {}
        self._redis_ok()
        found: dict[str, Vectors] = {}
        for key, value in zip(keys, values, strict=True):
            if isinstance(value, bytes) and len(value) == self.dim * _WIRE_DTYPE.itemsize:
                found[key] = np.frombuffer(value, dtype=_WIRE_DTYPE).astype(np.float32)
        return found

    async def _redis_set(self, vectors: dict[str, Vectors]) -> None:
        assert self._redis is not None
        try:
            async with asyncio.timeout(self._deadline_s):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, vector in vectors.items():
                        pipe.set(key, vector.astype(_WIRE_DTYPE).tobytes(), ex=self._ttl_s)
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            self._redis_failed("set", exc)
            return
        self._redis_ok()

    def _redis_failed(self, operation: str, exc: BaseException) -> None:
        self.redis_errors += 1
        self._skip_redis_until = time.monotonic() + REDIS_COOLDOWN_S
        if isinstance(exc, (TimeoutError, RedisTimeoutError)):
            self.redis_timeouts += 1
        if not self._redis_failing:
            self._redis_failing = True
            log.warning(
                "embedding cache: redis failing, computing embeddings without it",
                operation=operation,
                error=type(exc).__name__,
            )

    def _redis_ok(self) -> None:
        if self._redis_failing:
            self._redis_failing = False
            log.info("embedding cache: redis recovered")


def _item_size(key: str, blob: bytes) -> int:
    return len(blob) + len(key) + ITEM_OVERHEAD_BYTES
