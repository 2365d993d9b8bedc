"""The node's Redis clients for each `redis.mode`: one server, a Redis Cluster, or a master
found through Redis Sentinel.

Two clients per node: `data` (entries, indexes, leases, counters, embeddings; a pool) and
`bus` (the coherence subscription, which holds one connection for as long as it lives).

- `standalone` and `sentinel`: a blocking pool of `max_connections`; a call that finds
  every connection busy waits for one (at most the write deadline; lookups give up
  earlier, at their own deadline) instead of failing.
- `cluster`: redis-py's `RedisCluster` (slots, MOVED/ASK redirections, failover), with MGET
  split per slot. Keys keep their standalone names: no command the node sends needs two
  keys in one slot (entries spread over the whole cluster; each namespace's index, ranking
  and tag sets are single keys). SCAN walks every master. The pool holds `max_connections`
  per node and fails a call when they are all busy (redis-py's cluster client cannot wait).
- `sentinel`: the master of `sentinel_service` as told by the sentinels, looked up again on
  every reconnect (failover); connections to a demoted master are dropped.

Pub/sub: a classic PUBLISH reaches the subscribers of every node of a cluster, so the bus
subscribes on one node, picked at random among the nodes the cluster currently reports, and
picks again after a disconnect.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from cachefleet_contract.config import RedisConfig

__all__ = ["FleetRedisCluster", "RedisClients", "connect", "pubsub"]

BUS_CONNECT_TIMEOUT_S = 1.0
BUS_HEALTH_CHECK_S = 5


class FleetRedisCluster(RedisCluster):
    """`RedisCluster` whose MGET takes keys of any slots: one MGET per slot, not atomic (the
    cache never needs an atomic multi-key read)."""

    async def mget(self, keys: Any, *args: Any) -> list[Any]:
        """Values of `keys` (None where missing), in order, from every slot they live in."""
        return await self.mget_nonatomic(keys, *args)


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The master's connections, found through the sentinels; a call waits (`timeout`) for a
    busy pool like the standalone pool."""


@dataclass(frozen=True)
class RedisClients:
    """The data client (pooled) and the coherence bus client of a node.

    Typed as `Redis`: the cluster client offers the same commands the node sends."""

    data: aioredis.Redis
    bus: aioredis.Redis


def connect(config: RedisConfig, *, socket_timeout_s: float) -> RedisClients:
    """Build (not connect yet) the clients for `config` (`config.url` must be set).

    `socket_timeout_s`: the longest a data command, a data connection's set-up (sentinel
    query included) or the wait for a free connection of the standalone or sentinel pool
    may take: the tier deadlines bound the requests; these only bound the background work
    and must not fail connections that a busy event loop sets up slowly (hundreds at once
    under a burst of misses)."""
    assert config.url is not None
    url = config.url.get_secret_value()
    data_options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
    }
    bus_options: dict[str, Any] = {
        "socket_connect_timeout": BUS_CONNECT_TIMEOUT_S,
        "health_check_interval": BUS_HEALTH_CHECK_S,
    }
    if config.mode == "cluster":
        return RedisClients(
            data=_cluster(
                url, config.nodes, max_connections=config.max_connections, **data_options
            ),
            bus=_cluster(url, config.nodes, **bus_options),
        )
    if config.mode == "sentinel":
        assert config.sentinel_service is not None
        sentinel = _sentinel(url, config.nodes, timeout_s=socket_timeout_s)
        service = config.sentinel_service
        return RedisClients(
            data=sentinel.master_for(
                service,
                connection_pool_class=_BlockingSentinelPool,
                max_connections=config.max_connections,
                timeout=socket_timeout_s,
                retry_on_timeout=False,
                **data_options,
            ),
            bus=sentinel.master_for(service, **bus_options),
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=config.max_connections,
        timeout=socket_timeout_s,
        retry_on_timeout=False,
        **data_options,
    )
    return RedisClients(
        data=aioredis.Redis.from_pool(pool), bus=aioredis.from_url(url, **bus_options)
    )


async def pubsub(client: aioredis.Redis) -> PubSub:
    """A pub/sub of `client`; on a cluster, bound to one node it reports now (any node
    receives every classic PUBLISH)."""
    if isinstance(client, RedisCluster):
        await client.initialize()  # learns the nodes on first use
        node = random.choice(client.get_nodes())  # spreads the subscribers over the nodes
        return client.pubsub(node=node, ignore_subscribe_messages=True)
    return client.pubsub(ignore_subscribe_messages=True)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _cluster(url: str, nodes: list[str], **options: Any) -> aioredis.Redis:
    startup = [ClusterNode(*_host_port(address)) for address in nodes]
    client = FleetRedisCluster.from_url(url, startup_nodes=startup, **options)
    return cast(aioredis.Redis, client)


def _sentinel(url: str, nodes: list[str], *, timeout_s: float) -> Sentinel:
    """Sentinels at the URL's host and `nodes`; the URL's password, TLS and database apply to
    the master (sentinels are asked without credentials)."""
    parts = urlsplit(url)
    sentinels = [(parts.hostname or "localhost", parts.port or 26379)]
    sentinels += [_host_port(address) for address in nodes]
    options: dict[str, Any] = {"ssl": parts.scheme == "rediss"}
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    database = parts.path.strip("/")
    if database:
        options["db"] = int(database)
    return Sentinel(  # type: ignore[no-untyped-call]
        sentinels,
        sentinel_kwargs={
            "socket_connect_timeout": timeout_s,
            "socket_timeout": timeout_s,
        },
        **options,
    )
