"""Per-cache collection of node stats and tier health, on a timer, in the operator process.

Each tracked cache is collected every `stats_interval` (its own schedule in a `WorkQueue`):
every node's `/v1/cache/stats` and `/readyz`. The counters feed the cache's `HitRateWindow`;
a new `HitRateReport` is *published* at most once per interval and only on a meaningful
change, and the cache's reconcile (the only writer of its status) is asked to run then, or
when the external tiers' health flips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from cachefleet_contract.admin import Readiness, ReadinessTiers, StatsReport
from cachefleet_operator.adapters.kube import ApiError
from cachefleet_operator.adapters.nodes import NodeError
from cachefleet_operator.api.v1alpha1.semanticcache import Auth
from cachefleet_operator.domain.hitrate import (
    HitRateReport,
    HitRateWindow,
    aggregate_stats,
    build_report,
    should_publish,
)
from cachefleet_operator.domain.status import TierHealth
from cachefleet_operator.services.context import ServiceContext
from cachefleet_operator.services.discovery import NodeDiscovery
from cachefleet_operator.services.workqueue import QueueClosed, WorkQueue

__all__ = ["StatsCollector", "StatsTarget", "tier_health"]

log = structlog.get_logger("cachefleet.stats")

CacheKey = tuple[str, str]


@dataclass(frozen=True)
class StatsTarget:
    """What to collect for one cache (refreshed by every reconcile of it)."""

    namespace: str
    name: str
    node_service: str
    endpoints_annotation: str | None
    cache_namespaces: tuple[str, ...]
    external_redis: bool
    external_milvus: bool
    auth: Auth | None = None  # `spec.auth`: the stats route needs the admin tenant's key

    @property
    def key(self) -> CacheKey:
        return (self.namespace, self.name)


@dataclass
class _CacheStats:
    target: StatsTarget
    window: HitRateWindow
    published: HitRateReport | None = None
    health: TierHealth = field(default_factory=TierHealth)
    nodes_available: bool = False


def tier_health(readiness: Sequence[Readiness | None], *, redis: bool, milvus: bool) -> TierHealth:
    """External tiers as the nodes see them: reachable if any node reaches them.

    Redis counts as reachable when a node's coherence subscription is up (or, without one, its
    store breaker is closed); Milvus when a node reports it connected.
    """
    answered = [item.tiers for item in readiness if item and item.tiers is not None]
    detail = f"{len(answered)}/{len(readiness)} cache nodes answered"
    if not answered:
        return TierHealth(None, None, detail, collected=True)

    def redis_ok(tiers: ReadinessTiers) -> bool:
        if tiers.coherence is not None:
            return tiers.coherence
        return tiers.store.kind == "redis" and not tiers.store.breaker_open

    return TierHealth(
        redis=any(redis_ok(tiers) for tiers in answered) if redis else None,
        milvus=any(tiers.milvus.connected for tiers in answered) if milvus else None,
        detail=detail,
        collected=True,
    )


class StatsCollector:
    """Collects tracked caches on their schedule; tells `on_change` when status should move."""

    def __init__(
        self,
        context: ServiceContext,
        *,
        discovery: NodeDiscovery,
        on_change: Callable[[str, str], None],
    ) -> None:
        """Every `stats_interval` of `context.config`, `stats_concurrency` caches at once,
        rates over `hit_rate_window`."""
        self._discovery = discovery
        self._access = context.access
        self._nodes = context.nodes
        self._metrics = context.metrics
        self.interval = context.config.stats_interval
        self.window = timedelta(seconds=context.config.hit_rate_window)
        self._concurrency = context.config.stats_concurrency
        self._on_change = on_change
        self._clock = context.clock
        self._caches: dict[CacheKey, _CacheStats] = {}
        self._queue: WorkQueue[CacheKey] = WorkQueue(
            base_delay=self.interval, max_delay=self.interval
        )

    # --- what the reconciler reads and tells --------------------------------------------------

    def report(self, key: CacheKey) -> HitRateReport | None:
        state = self._caches.get(key)
        return state.published if state else None

    def health(self, key: CacheKey) -> TierHealth:
        state = self._caches.get(key)
        return state.health if state else TierHealth()

    def track(self, target: StatsTarget, *, nodes_available: bool) -> None:
        """Collect this cache from now on; right away when it is new, changed or its nodes just
        became available."""
        state = self._caches.get(target.key)
        if state is None:
            self._caches[target.key] = _CacheStats(
                target=target, window=HitRateWindow(self.window), nodes_available=nodes_available
            )
            self._queue.add(target.key)
            return
        urgent = state.target != target or (nodes_available and not state.nodes_available)
        state.target, state.nodes_available = target, nodes_available
        if urgent:
            self._queue.add(target.key)

    def forget(self, key: CacheKey) -> None:
        self._caches.pop(key, None)
        self._queue.discard(key)

    # --- collection ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Collect until `shutdown()` (run as a task)."""
        workers = [asyncio.create_task(self._worker()) for _ in range(self._concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def shutdown(self) -> None:
        self._queue.shutdown()

    async def _worker(self) -> None:
        while True:
            try:
                key = await self._queue.get()
            except QueueClosed:
                return
            try:
                if key in self._caches:
                    await self.collect(key)
            except Exception:
                log.exception("stats_collection_failed", namespace=key[0], name=key[1])
            finally:
                self._queue.done(key)
                if key in self._caches:
                    self._queue.add(key, after=self.interval)

    async def collect(self, key: CacheKey) -> None:
        """One collection of one cache."""
        state = self._caches[key]
        target = state.target
        try:
            urls = await self._discovery.endpoints(
                target.namespace, target.node_service, target.endpoints_annotation
            )
        except ApiError as error:
            log.warning(
                "endpoint_discovery_failed", namespace=key[0], name=key[1], error=str(error)
            )
            urls = []
        if not urls:
            self._metrics.stats_collections.labels("no_endpoints").inc()
            self._set_health(
                state, TierHealth(None, None, "no cache node endpoint", collected=True)
            )
            return
        admin = await self._access.admin_key_for(target.namespace, target.auth)
        stats, readiness = await asyncio.gather(
            asyncio.gather(
                *(self._nodes.stats(url, api_key=admin.value) for url in urls),
                return_exceptions=True,
            ),
            asyncio.gather(*(self._nodes.readiness(url) for url in urls), return_exceptions=True),
        )
        responses = [item for item in stats if isinstance(item, StatsReport)]
        errors = [item for item in stats if isinstance(item, NodeError | Exception)]
        result = "ok" if not errors else ("partial" if responses else "unreachable")
        self._metrics.stats_collections.labels(result).inc()
        if errors:
            log.info(
                "node_stats_errors", namespace=key[0], name=key[1], errors=[str(e) for e in errors]
            )
        health = tier_health(
            [item if isinstance(item, Readiness) else None for item in readiness],
            redis=target.external_redis,
            milvus=target.external_milvus,
        )
        changed = self._set_health(state, health, notify=False)
        if responses:
            now = self._clock()
            sample = aggregate_stats(responses, target.cache_namespaces, now)
            state.window.observe(sample)
            report = build_report(state.window.rates(now), sample)
            # Never let jitter of the schedule skip a whole interval.
            min_interval = timedelta(seconds=self.interval * 0.9)
            if should_publish(state.published, report, now=now, min_interval=min_interval):
                state.published = report
                changed = True
        if changed:
            self._on_change(*key)

    def _set_health(self, state: _CacheStats, health: TierHealth, *, notify: bool = True) -> bool:
        flipped = (state.health.redis, state.health.milvus) != (health.redis, health.milvus)
        external = state.target.external_redis or state.target.external_milvus
        if external and state.health.collected != health.collected:
            # the first collection since the start: the conditions carried over from before
            # give way to what the nodes say now (even when no node answered)
            flipped = True
        state.health = health
        if flipped and notify:
            self._on_change(*state.target.key)
        return flipped
