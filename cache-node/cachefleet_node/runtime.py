"""Wires a node together from its config: clients, tiers, embedder, engine, fleet, upkeep."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
import structlog

from cachefleet_contract import keyspace
from cachefleet_node import redis_clients
from cachefleet_node.auth import TenantResolver
from cachefleet_node.config import EmbeddingConfig, NodeConfig
from cachefleet_node.core.judging import load_verifier
from cachefleet_node.embedders.base import Embedder, redact_url
from cachefleet_node.embedders.factory import build_embedder
from cachefleet_node.engine import CacheEngine
from cachefleet_node.fleet import Fleet
from cachefleet_node.flights import FleetLeases, Flights
from cachefleet_node.key_check import KeyVerdicts
from cachefleet_node.memory import configured_budget
from cachefleet_node.metrics import NodeMetrics
from cachefleet_node.refill import refill_forever
from cachefleet_node.spaces import VectorSpace
from cachefleet_node.tiers.entry_store import EntryStore, LocalEntryStore, RedisEntryStore
from cachefleet_node.tiers.milvus_store import MilvusVectorStore
from cachefleet_node.upstream import Upstream

__all__ = ["NodeRuntime"]

log = structlog.get_logger(__name__)

MILVUS_CONNECT_TIMEOUT_S = 30.0
MILVUS_RETRY_S = 5.0
STATS_FLUSH_S = 1.0
EXPIRY_SWEEP_S = 600.0
SHUTDOWN_STEP_S = 10.0  # longest wait for one step of `close` (background tasks, bus, ...)
SHUTDOWN_ENGINE_S = 60.0  # the engine's: each tier's queued writes get up to 15 s
CONFIG_RELOAD_S = 2.0  # how often the config file is read again for `embedding_next`
NEXT_LOAD_RETRY_S = 30.0  # after a failed live load of the next embedding model


class NodeRuntime:
    """Everything a running node holds; `start` builds it, `close` releases it."""

    def __init__(
        self, config: NodeConfig, config_source: Callable[[], NodeConfig] | None = None
    ) -> None:
        """`config_source`: reads the config again (the file the node was started from); the
        node then follows `embedding_next` live (see `follow_embedding`)."""
        self.config = config
        self._config_source = config_source
        self._config_error: str | None = None
        self._next_wanted: EmbeddingConfig | None = config.embedding_next
        self._next_task: asyncio.Task[None] | None = None
        self._next_retry_at = 0.0
        self.node_id = config.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = NodeMetrics()
        self.tenants = TenantResolver(config.auth)
        self.started_at = time.time()
        self.redis: aioredis.Redis | None = None
        self._bus_redis: aioredis.Redis | None = None
        self.engine: CacheEngine
        self.fleet: Fleet
        self.upstream: Upstream
        self.key_verdicts: KeyVerdicts
        self.flights = Flights()
        self.leases: FleetLeases | None = None  # single flight across nodes (Redis)
        # One budget for every in-process tier: L1 exact, L1 semantic, the embedding caches.
        self.memory_budget = configured_budget(config.l1.max_bytes, config.l1.memory_fraction)
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = False

    async def start(self, embedder: Embedder | None = None) -> None:
        """Connect and load everything; raises on configuration problems (bad model dir)."""
        config = self.config
        prefix = config.redis.key_prefix
        if config.redis.url is not None:
            clients = redis_clients.connect(
                config.redis, socket_timeout_s=max(config.deadlines.write_ms / 1000, 1.0)
            )
            self.redis, self._bus_redis = clients.data, clients.bus
        if embedder is None:
            embedder = await self._embedder(config.embedding)
        else:
            await _warm_up(embedder)
        next_embedder = None
        if config.embedding_next is not None:
            next_embedder = await self._embedder(config.embedding_next)
        store: EntryStore
        if self.redis is not None:
            store = RedisEntryStore(self.redis, prefix)
        else:
            store = LocalEntryStore(Path(config.data_dir) / "entries.sqlite3")
        self.engine = CacheEngine(
            config,
            embedder=embedder,
            store=store,
            vectors=self._vector_store(embedder),
            metrics=self.metrics,
            next_embedder=next_embedder,
            next_vectors=None if next_embedder is None else self._vector_store(next_embedder),
            memory_budget=self.memory_budget,
        )
        self.fleet = Fleet(config, self.engine, self.redis)
        if self.redis is not None and config.single_flight.fleet:
            self.leases = FleetLeases(
                self.redis,
                prefix,
                self.engine.store_guard,
                self.metrics,
                deadline_s=config.deadlines.redis_ms / 1000,
                hold_s=config.upstream.timeout_s + config.deadlines.write_ms / 1000,
                poll_s=config.single_flight.poll_ms / 1000,
            )
        upstream_key = os.environ.get(config.upstream.api_key_env)
        self.upstream = Upstream(config.upstream, upstream_key)
        self.key_verdicts = KeyVerdicts(config.auth, self.upstream, self.metrics)
        if not self.tenants.enabled and config.auth.serve_hits_without_key_check:
            log.warning(
                "hits_served_without_key_check",
                detail="auth.serve_hits_without_key_check is on: any caller reads cached "
                "answers whatever its credential; only for an internal, key-less shared cache",
            )
        if any(ns.verifier.enabled for ns in config.namespaces):
            await asyncio.to_thread(load_verifier)  # not on the first request's path

        for space in self.engine.spaces.all():
            if space.vectors is not None:
                await self._connect_milvus_once(space.vectors)
        await self.fleet.start(self._bus_redis, self.node_id)
        self._tasks.append(asyncio.create_task(refill_forever(self.engine)))  # L1 from Milvus
        self._tasks.append(asyncio.create_task(self._flush_stats_forever()))
        self._tasks.append(asyncio.create_task(self._sweep_forever()))
        if self._config_source is not None:
            self._tasks.append(asyncio.create_task(self._watch_config_forever()))
        self.ready = True
        log.info(
            "node_started",
            node_id=self.node_id,
            redis=self.redis is not None,
            milvus="embedded" if config.milvus.uri is None else "remote",
            embedder=self.engine.spaces.active.model_id,
            embedding_next=None if next_embedder is None else next_embedder.model_id,
            upstream=redact_url(config.upstream.base_url),
        )

    async def _embedder(self, config: EmbeddingConfig) -> Embedder:
        embedder = await build_embedder(
            config,
            self.redis,
            self.config.redis.key_prefix,
            self.config.deadlines.redis_ms / 1000,
            self.memory_budget,
        )
        await _warm_up(embedder)
        return embedder

    def _vector_store(self, embedder: Embedder) -> MilvusVectorStore:
        config = self.config
        uri = config.milvus.uri or MilvusVectorStore.embedded_uri(config.data_dir)
        return MilvusVectorStore(
            uri,
            config.milvus.token.get_secret_value() if config.milvus.token else None,
            keyspace.milvus_collection(config.milvus.collection_prefix, embedder.space),
            embedder.dim,
        )

    async def _connect_milvus_once(self, vectors: MilvusVectorStore) -> None:
        try:
            await asyncio.wait_for(vectors.connect(), MILVUS_CONNECT_TIMEOUT_S)
        except Exception as exc:
            log.warning(
                "milvus_unavailable",
                collection=vectors.collection,
                error=type(exc).__name__,
                retry_s=MILVUS_RETRY_S,
            )
            self._tasks.append(asyncio.create_task(self._connect_milvus_forever(vectors)))

    async def _connect_milvus_forever(self, vectors: MilvusVectorStore) -> None:
        while not vectors.connected:
            await asyncio.sleep(MILVUS_RETRY_S)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(vectors.connect(), MILVUS_CONNECT_TIMEOUT_S)

    # ------------------------------------------------------- next embedding model, live

    async def _watch_config_forever(self) -> None:
        assert self._config_source is not None
        while True:
            await asyncio.sleep(CONFIG_RELOAD_S)
            try:
                config = await asyncio.to_thread(self._config_source)
            except Exception as exc:
                if str(exc) != self._config_error:
                    self._config_error = str(exc)
                    log.warning("config_reload_failed", error=str(exc)[:500])
                continue
            self._config_error = None
            with contextlib.suppress(Exception):
                await self.follow_embedding(config)

    async def follow_embedding(self, config: NodeConfig) -> None:
        """Follow the `embedding_next` of a config read again, without a restart.

        A Kubernetes ConfigMap volume updates the file in place; the operator starts,
        restarts or ends an embedding migration by changing `embedding_next` alone, so the
        node's vectors (Milvus Lite in the data dir included) and L1 survive the migration:

        - a new next model: loaded in the background (`loading` in GET /v1/cache/embedding),
          then it becomes the dual-write target (replacing another next model);
        - no next model: the other space is dropped (the migration is over: lookups already
          use `embedding`'s model; or it was cancelled). Kept while the space that serves
          lookups is not `embedding`'s model (a switch that has not reached this node yet).

        Everything else in the file takes effect at the next start (a change of it changes
        the pods' config hash: the operator rolls them).
        """
        wanted = config.embedding_next
        spaces = self.engine.spaces
        if wanted == self._next_wanted and (wanted is None or self._next_retry_at == 0.0):
            return
        if wanted is not None and time.monotonic() < self._next_retry_at:
            return
        if self._next_task is not None and not self._next_task.done():
            self._next_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._next_task
        self._next_task = None
        spaces.loading = None
        self._next_retry_at = 0.0
        target = spaces.target
        if wanted is None:
            if target is not None and spaces.active.model_id != config.embedding.model_id:
                log.warning(
                    "embedding_next_kept",
                    detail="the config drops embedding_next but this node still serves "
                    "lookups from another model than embedding.model_id",
                    serving=spaces.active.model_id,
                    configured=config.embedding.model_id,
                )
                return
            self._next_wanted = None
            if target is not None:
                spaces.replace_target(None)
                await self.engine.release_space(target)
                log.info("embedding_next_dropped", space=target.space, model_id=target.model_id)
            return
        self._next_wanted = wanted
        if target is not None and target.model_id == wanted.model_id:
            return
        if spaces.active.model_id == wanted.model_id:
            log.warning("embedding_next_serving", model_id=wanted.model_id)
            return
        self._next_task = asyncio.create_task(self._load_next(wanted))

    async def _load_next(self, wanted: EmbeddingConfig) -> None:
        engine, spaces = self.engine, self.engine.spaces
        spaces.loading = wanted.model_id
        started = time.perf_counter()
        try:
            embedder = await self._embedder(wanted)
            vectors = self._vector_store(embedder)
            await self._connect_milvus_once(vectors)
            previous = spaces.replace_target(VectorSpace(embedder, vectors))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._next_retry_at = time.monotonic() + NEXT_LOAD_RETRY_S
            log.error(
                "embedding_next_load_failed",
                model_id=wanted.model_id,
                error=f"{type(exc).__name__}: {exc}"[:500],
                retry_s=NEXT_LOAD_RETRY_S,
            )
            return
        finally:
            if spaces.loading == wanted.model_id:
                spaces.loading = None
        log.info(
            "embedding_next_loaded",
            model_id=wanted.model_id,
            space=embedder.space,
            seconds=round(time.perf_counter() - started, 2),
        )
        if previous is not None:
            await engine.release_space(previous)

    async def _flush_stats_forever(self) -> None:
        while True:
            await asyncio.sleep(STATS_FLUSH_S)
            if self.redis is not None:
                with contextlib.suppress(Exception):
                    await self.engine.stats.flush(self.redis, self.config.redis.key_prefix)
            with contextlib.suppress(Exception):
                await self.engine.flush_hits()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_S)
            with contextlib.suppress(Exception):
                await self.fleet.renew()
            for space in self.engine.spaces.all():
                vectors = space.vectors
                if vectors is not None and vectors.connected:
                    with contextlib.suppress(Exception):
                        await vectors.purge_expired()

    async def close(self) -> None:
        """Stop background work, flush, disconnect."""
        self.ready = False
        if self._next_task is not None:
            self._tasks.append(self._next_task)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            ended, _ = await asyncio.wait(self._tasks, timeout=SHUTDOWN_STEP_S)
            for task in ended:  # their errors were logged where they happened
                if not task.cancelled():
                    task.exception()
        await _within("fleet", self.fleet.stop(), SHUTDOWN_STEP_S)
        if self.leases is not None:  # each release waits for its answer's write-back
            await _within("leases", self.leases.drain(), SHUTDOWN_STEP_S)
        await _within("engine", self.engine.close(), SHUTDOWN_ENGINE_S)
        await _within("upstream", self.upstream.aclose(), SHUTDOWN_STEP_S)
        for client in (self.redis, self._bus_redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    if client is self.redis:
                        await _within(
                            "hit_counts",
                            self.engine.stats.flush(client, self.config.redis.key_prefix),
                            SHUTDOWN_STEP_S,
                        )
                    await _within("redis", client.aclose(), SHUTDOWN_STEP_S)


async def _within(step: str, work: Awaitable[object], timeout_s: float) -> None:
    """Await one shutdown step for at most `timeout_s`; past that, cancel it without waiting
    for the cancellation to end (a client call that retries through it must not hold the
    node's exit) and log it. The step's own error is raised as before."""
    task = asyncio.ensure_future(work)
    await asyncio.wait({task}, timeout=timeout_s)
    if not task.done():
        task.cancel()
        log.warning("shutdown_step_timeout", step=step, timeout_s=timeout_s)
        return
    task.result()


async def _warm_up(embedder: Embedder) -> None:
    """The first inference allocates and tunes kernels; keep it off the request path (and out
    of the embedding cache)."""
    await getattr(embedder, "inner", embedder).embed(["cachefleet warm-up"])
