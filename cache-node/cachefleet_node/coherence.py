"""Coherence bus: invalidations and namespace switches reach every node sharing a Redis.

Events travel on a Redis pub/sub channel (on a Redis Cluster: subscribed on one node, which
receives every node's PUBLISH; see `redis_clients`). Pub/sub drops messages while a subscriber is
disconnected, so every (re)subscription starts with a reset: the node empties its L1 tiers
and reloads the active namespaces. A node can therefore never keep serving an L1 entry that
was invalidated while it was cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub

from cachefleet_contract import keyspace
from cachefleet_node import redis_clients

__all__ = ["CoherenceBus"]

log = structlog.get_logger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
ResetHandler = Callable[[], Awaitable[None]]


class CoherenceBus:
    """Publishes and applies coherence events through Redis pub/sub."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        node_id: str,
        on_event: EventHandler,
        on_reset: ResetHandler,
    ) -> None:
        self._redis = client
        self._channel = keyspace.events_channel(prefix)
        self._node_id = node_id
        self._on_event = on_event
        self._on_reset = on_reset
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def publish(self, event: dict[str, Any]) -> int:
        """Send an event to every node (this one included); return the receiver count."""
        payload = orjson.dumps({**event, "origin": self._node_id})
        return int(await self._redis.publish(self._channel, payload))

    def start(self) -> None:
        """Start the subscriber loop in the background."""
        self._task = asyncio.create_task(self._run(), name="coherence-bus")

    async def stop(self) -> None:
        """Stop the subscriber loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = await redis_clients.pubsub(self._redis)
                await pubsub.subscribe(self._channel)
                await self._on_reset()
                self.subscribed.set()
                backoff = 0.1
                log.info("coherence_subscribed", channel=self._channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    await self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.subscribed.is_set():
                    log.warning("coherence_disconnected", error=type(exc).__name__)
                self.subscribed.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _dispatch(self, data: bytes) -> None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("coherence_bad_event")
            return
        if isinstance(event, dict):
            await self._on_event(event)
