"""The fleet-wide state of a cache, and its one owner on a node.

Two switches hold for every node of a fleet: the namespace switch (which cache namespace each
configured namespace uses: a model-version rollover) and the embedding switch (which
embedding space serves lookups: an embedding migration). A switch is persisted, then
broadcast on the coherence bus; every node, this one included, applies it to its routing or
its embedding spaces. A node starting, or resubscribing after a cut (pub/sub loses what is
sent meanwhile), reloads both. Invalidations travel on the same bus.

Persisted in Redis under `keyspace.active_namespaces_key` (hash: configured name -> cache
namespace) and `keyspace.embedding_active_key` (string: space), each with
`keyspace.FLEET_STATE_TTL_S`, renewed while nodes run; without Redis (one node) the embedding
switch is a file in the data dir and namespace switches are not persisted. Bus events, on
`keyspace.events_channel`: `switch`, `embedding_switch`, `invalidate` (and `reset`: empty L1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog

from cachefleet_contract import keyspace
from cachefleet_node.coherence import CoherenceBus
from cachefleet_node.config import NodeConfig
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.engine import CacheEngine
from cachefleet_node.spaces import UnknownSpaceError

__all__ = ["EMBEDDING_ACTIVE_FILE", "Fleet"]

log = structlog.get_logger(__name__)

EMBEDDING_ACTIVE_FILE = "embedding-active"  # without Redis: the persisted embedding switch


class Fleet:
    """Persists, broadcasts and applies the switches and invalidations of the fleet."""

    def __init__(self, config: NodeConfig, engine: CacheEngine, redis: aioredis.Redis | None):
        """`redis`: the fleet's shared Redis (None: a node on its own)."""
        self._engine = engine
        self._redis = redis
        self._prefix = config.redis.key_prefix
        self._space_file = Path(config.data_dir) / EMBEDDING_ACTIVE_FILE
        self.bus: CoherenceBus | None = None

    async def start(self, bus_redis: aioredis.Redis | None, node_id: str) -> None:
        """Adopt the persisted switches (best effort), then follow the bus (with Redis)."""
        with contextlib.suppress(Exception):
            await self._load_embedding()
        if self._redis is None or bus_redis is None:
            return
        with contextlib.suppress(Exception):
            await self._load_namespaces()
        self.bus = CoherenceBus(bus_redis, self._prefix, node_id, self.apply, self._reset)
        self.bus.start()

    async def stop(self) -> None:
        """Stop following the bus."""
        if self.bus is not None:
            await self.bus.stop()

    # ------------------------------------------------------------------ namespace switch

    async def switch_namespace(self, name: str, namespace: str) -> None:
        """Point configured namespace `name` at cache namespace `namespace` on every node."""
        if self._redis is not None:
            key = keyspace.active_namespaces_key(self._prefix)
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(key, name, namespace)
            pipe.expire(key, keyspace.FLEET_STATE_TTL_S)
            await pipe.execute()
        await self._broadcast({"type": "switch", "name": name, "namespace": namespace})

    async def persisted_namespaces(self) -> dict[str, str]:
        """Namespace switches persisted in Redis (configured name -> cache namespace)."""
        if self._redis is None:
            return {}
        raw = await self._redis.hgetall(keyspace.active_namespaces_key(self._prefix))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def _load_namespaces(self) -> None:
        if self._redis is not None:
            self._engine.router.replace_active(await self.persisted_namespaces())

    # ------------------------------------------------------------------ embedding switch

    async def switch_embedding(self, space: str) -> None:
        """Make `space` serve lookups on every node. Raises `UnknownSpaceError` when this
        node has no embedder for `space`."""
        if space not in {s.space for s in self._engine.spaces.all()}:
            raise UnknownSpaceError(space)
        if self._redis is not None:
            await self._redis.set(
                keyspace.embedding_active_key(self._prefix), space, ex=keyspace.FLEET_STATE_TTL_S
            )
        else:
            self._space_file.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(self._space_file.write_text, space, encoding="utf-8")
        await self._broadcast({"type": "embedding_switch", "space": space})

    async def _load_embedding(self) -> None:
        if self._redis is not None:
            raw = await self._redis.get(keyspace.embedding_active_key(self._prefix))
            space = None if raw is None else _text(raw)
        elif self._space_file.is_file():
            space = self._space_file.read_text(encoding="utf-8").strip()
        else:
            space = None
        if space:
            self._activate_space(space)

    def _activate_space(self, space: str) -> None:
        try:
            self._engine.activate_space(space)
        except UnknownSpaceError:
            # This node has no embedder for that space (its config lacks `embedding_next`):
            # it keeps serving from its own space, and says so in GET /v1/cache/embedding.
            log.warning(
                "embedding_switch_unknown_space",
                space=space,
                known=[s.space for s in self._engine.spaces.all()],
            )

    # ---------------------------------------------------------------------- invalidation

    async def invalidate(self, scope: InvalidationScope) -> None:
        """Drop `scope` from the L1 tiers of every node (the shared tiers are purged once,
        by the caller)."""
        await self._broadcast({"type": "invalidate", "scope": scope.to_dict()})

    async def drop_namespace_stats(self, namespace: str) -> None:
        """Delete a purged namespace's fleet-wide counters (its last Redis key)."""
        self._engine.stats.forget(namespace)
        if self._redis is not None:
            await self._redis.unlink(keyspace.stats_key(self._prefix, namespace))

    async def forget(self, namespaces: Iterable[str]) -> None:
        """The cache is being deleted: drop the counters of `namespaces` and the persisted
        namespace and embedding switches (the keys that only expire a month after use)."""
        for namespace in namespaces:
            await self.drop_namespace_stats(namespace)
        if self._redis is not None:
            await self._redis.unlink(
                keyspace.active_namespaces_key(self._prefix),
                keyspace.embedding_active_key(self._prefix),
            )

    async def renew(self) -> None:
        """Renew the TTL of the persisted switches while this node runs."""
        if self._redis is None:
            return
        pipe = self._redis.pipeline(transaction=False)
        for key in (
            keyspace.active_namespaces_key(self._prefix),
            keyspace.embedding_active_key(self._prefix),
        ):
            pipe.expire(key, keyspace.FLEET_STATE_TTL_S)
        await pipe.execute()

    # ------------------------------------------------------------------------------- bus

    async def apply(self, event: dict[str, Any]) -> None:
        """Apply a coherence event to this node's L1 tiers, routing and embedding spaces."""
        engine = self._engine
        kind = str(event.get("type"))
        if kind == "invalidate" and isinstance(event.get("scope"), dict):
            engine.drop_l1(InvalidationScope.from_dict(event["scope"]))
        elif kind == "switch":
            name, namespace = str(event.get("name")), str(event.get("namespace"))
            previous = engine.router.active(name)
            if engine.router.set_active(name, namespace):
                engine.drop_l1(InvalidationScope(namespace=previous))
        elif kind == "reset":
            engine.clear_l1()
        elif kind == "embedding_switch":
            self._activate_space(str(event.get("space")))
        else:
            return
        engine.metrics.coherence_events.labels(kind).inc()
        log.info("coherence_event", type=kind, origin=event.get("origin"))

    async def _broadcast(self, event: dict[str, Any]) -> None:
        """Apply an event here and send it to the other nodes (when a Redis is shared)."""
        await self.apply(event)
        if self.bus is not None:
            await self.bus.publish(event)

    async def _reset(self) -> None:
        """(Re)subscribed: events may have been lost, so start again from the persisted state."""
        self._engine.clear_l1()
        await self._load_namespaces()
        await self._load_embedding()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
