"""The operator's runtime: one work queue, its workers, the stats collector, and the entry
points the kopf handlers call.

```
kopf watch events ─► handlers ─► Controller.*_event ─► WorkQueue (dedup, delay, backoff)
                                                              │ N workers
                          ┌───────────────────────────────────┴──────────────┐
                 CacheReconciler.reconcile                     ModelVersionReconciler.reconcile
                 (+ LifecycleRunner: rollover,                               │ spec or
                  warm-up, purge, re-embedding)                              │ status.cacheNamespace
                          ▲                                                  ▼
                          │ on_change (report published,      MV watch event ─► index ─► dependents
                   StatsCollector (timer per cache)   health flipped)
                 InvalidationReconciler.reconcile  ◄── CacheInvalidation watch events (one-shot)
```
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import structlog

from cachefleet_operator.adapters.kube import ApiError, KubeClient
from cachefleet_operator.adapters.metrics import OperatorMetrics
from cachefleet_operator.adapters.nodes import NodeClient
from cachefleet_operator.api.v1alpha1 import SemanticCache
from cachefleet_operator.domain.endpoints import ENDPOINTS_ANNOTATION
from cachefleet_operator.services.context import Outcome, ServiceContext
from cachefleet_operator.services.discovery import NodeDiscovery
from cachefleet_operator.services.events import EventRecorder
from cachefleet_operator.services.invalidations import InvalidationReconciler
from cachefleet_operator.services.lifecycle import LifecycleRunner
from cachefleet_operator.services.modelversions import ModelVersionReconciler
from cachefleet_operator.services.nodeaccess import NodeAccess
from cachefleet_operator.services.permissions import WatchPermissions
from cachefleet_operator.services.purge import PurgeOutcome, Purger
from cachefleet_operator.services.semanticcaches import CacheReconciler
from cachefleet_operator.services.stats import StatsCollector
from cachefleet_operator.services.workqueue import QueueClosed, WorkQueue
from cachefleet_operator.settings import OperatorConfig

__all__ = ["CACHE", "INVALIDATION", "MODEL_VERSION", "Controller"]

log = structlog.get_logger("cachefleet.controller")

CACHE = "SemanticCache"
MODEL_VERSION = "ModelVersion"
INVALIDATION = "CacheInvalidation"
#: Child events come in bursts (apply, then status updates): coalesce them.
CHILD_EVENT_DELAY_S = 0.5
#: Backoff of a failed pass, per object: 2 s, 4 s, 8 s, … capped at 5 min, each up to 20%
#: shorter at random; reset by a success or a new spec.
RETRY_BASE_S, RETRY_MAX_S, RETRY_JITTER = 2.0, 300.0, 0.2
Key = tuple[str, str, str]


def _fingerprint(body: Mapping[str, Any], annotation: str | None = None) -> tuple[Any, ...]:
    """What makes a watch event of our own kinds worth a pass (status-only changes are not)."""
    metadata = body.get("metadata", {})
    return (
        metadata.get("uid"),
        metadata.get("generation"),
        bool(metadata.get("deletionTimestamp")),
        (metadata.get("annotations") or {}).get(annotation) if annotation else None,
    )


class Controller:
    """Owns the clients, the queue and the reconcilers for one operator process."""

    def __init__(
        self,
        config: OperatorConfig,
        *,
        kube: KubeClient,
        nodes: NodeClient,
        metrics: OperatorMetrics,
    ) -> None:
        self.config = config
        self.kube = kube
        self.nodes = nodes
        self.metrics = metrics
        self.queue: WorkQueue[Key] = WorkQueue(
            base_delay=RETRY_BASE_S, max_delay=RETRY_MAX_S, jitter=RETRY_JITTER
        )
        self.events = EventRecorder(kube, metrics)
        self.discovery = NodeDiscovery(kube, from_annotation=config.node_endpoints_from_annotation)
        self.access = NodeAccess(kube, self.discovery)
        context = ServiceContext(
            kube=kube,
            nodes=nodes,
            access=self.access,
            events=self.events,
            metrics=metrics,
            config=config,
        )
        self.collector = StatsCollector(
            context, discovery=self.discovery, on_change=self.enqueue_cache
        )
        self.caches = CacheReconciler(
            context, collector=self.collector, lifecycle=LifecycleRunner(context)
        )
        self.model_versions = ModelVersionReconciler(context)
        self.purger = Purger(context)
        self.invalidations = InvalidationReconciler(context)
        self.permissions = WatchPermissions(kube, namespaces=config.namespaces)
        self._seen: dict[Key, tuple[Any, ...]] = {}
        self._readiness: dict[tuple[str, str], str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"cachefleet-worker-{index}")
            for index in range(self.config.workers)
        ]
        self._tasks.append(asyncio.create_task(self.collector.run(), name="cachefleet-stats"))
        self._tasks.append(
            asyncio.create_task(self.permissions.run(), name="cachefleet-permissions")
        )
        self.started = True
        self._update_gauges()

    async def stop(self) -> None:
        self.queue.shutdown()
        self.collector.shutdown()
        self.permissions.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.nodes.aclose()
        await self.kube.aclose()

    def alive(self) -> bool:
        """Liveness: every worker task is still running."""
        return self.started and all(not task.done() for task in self._tasks)

    def readiness_problems(self) -> list[str]:
        """Readiness: started, and every watch the operator relies on is allowed (empty)."""
        if not self.started:
            return ["starting"]
        return self.permissions.readiness_problems()

    # --- entry points for the handlers --------------------------------------------------------

    def enqueue_cache(
        self, namespace: str, name: str, *, after: float = 0.0, reset: bool = False
    ) -> None:
        """A pass over a SemanticCache; `reset` (its spec, or a ModelVersion it uses, changed)
        ends its backoff: the new spec gets a pass now and a fresh 2 s first retry."""
        key: Key = (CACHE, namespace, name)
        if reset:
            self.queue.forget(key)
        self.queue.add(key, after=after)
        self.metrics.queue_depth.set(self.queue.due())

    def cache_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A SemanticCache watch event: a pass unless only its status changed."""
        metadata = body.get("metadata", {})
        key: Key = (CACHE, metadata.get("namespace", ""), metadata.get("name", ""))
        self._watched(CACHE)
        if event_type == "DELETED":
            self._forget(key)
            return
        fingerprint = _fingerprint(body, ENDPOINTS_ANNOTATION)
        if self._seen.get(key) != fingerprint:
            self._seen[key] = fingerprint
            self.enqueue_cache(key[1], key[2], reset=True)

    def model_version_event(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        """A ModelVersion watch event. True when its dependants must look again (it appeared,
        went away, its spec or its active cache namespace changed): each cache rolls over on
        its own nodes as soon as it sees the new spec."""
        metadata = body.get("metadata", {})
        key: Key = (MODEL_VERSION, metadata.get("namespace", ""), metadata.get("name", ""))
        self._watched(MODEL_VERSION)
        active = (body.get("status") or {}).get("cacheNamespace")
        if event_type == "DELETED":
            self._seen.pop(key, None)
            self.queue.discard(key)
            return True
        fingerprint = (*_fingerprint(body), active)
        previous = self._seen.get(key)
        self._seen[key] = fingerprint
        if previous is None or previous[:3] != fingerprint[:3]:
            self.queue.forget(key)
            self.queue.add(key)
            return True
        return bool(previous[-1] != active)

    def child_event(self, kind: str, body: Mapping[str, Any]) -> None:
        """A child changed or went away: its owner looks again (soon, once per burst)."""
        metadata = body.get("metadata", {})
        self._watched(kind)
        owners = [
            ref
            for ref in metadata.get("ownerReferences") or []
            if ref.get("kind") == CACHE and ref.get("controller")
        ]
        if owners and metadata.get("namespace"):
            self.enqueue_cache(metadata["namespace"], owners[0]["name"], after=CHILD_EVENT_DELAY_S)

    def invalidation_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A CacheInvalidation watch event: a pass unless it finished (it never runs twice)."""
        metadata = body.get("metadata", {})
        key: Key = (INVALIDATION, metadata.get("namespace", ""), metadata.get("name", ""))
        self._watched(INVALIDATION)
        if event_type == "DELETED":
            self._seen.pop(key, None)
            self.queue.discard(key)
            return
        if (body.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self._seen.pop(key, None)
            return
        fingerprint = _fingerprint(body)
        if self._seen.get(key) != fingerprint:
            self._seen[key] = fingerprint
            self.queue.add(key)

    async def purge(self, body: Mapping[str, Any]) -> PurgeOutcome:
        """Deletion with `deletionPolicy: Delete` (called by the kopf deletion handler)."""
        cache = SemanticCache.model_validate(body)
        return await self.purger.purge(cache, body)

    # --- internals ----------------------------------------------------------------------------

    def _watched(self, resource: str) -> None:
        self.metrics.watch_events.labels(resource).inc()
        self.metrics.last_watch_event.labels(resource).set(time.time())

    def _forget(self, key: Key) -> None:
        self._seen.pop(key, None)
        self.queue.discard(key)
        self.caches.forget((key[1], key[2]))
        self._readiness.pop((key[1], key[2]), None)
        self._update_gauges()

    def _update_gauges(self) -> None:
        counts = Counter(self._readiness.values())
        for state in ("True", "False", "Unknown"):
            self.metrics.caches.labels(state).set(counts.get(state, 0))
        self.metrics.queue_depth.set(self.queue.due())

    async def _dispatch(self, key: Key) -> Outcome:
        kind, namespace, name = key
        if kind == CACHE:
            outcome = await self.caches.reconcile(namespace, name)
            if outcome.ready is not None:
                self._readiness[(namespace, name)] = outcome.ready
            else:
                self._readiness.pop((namespace, name), None)
            return outcome
        if kind == INVALIDATION:
            return await self.invalidations.reconcile(namespace, name)
        return await self.model_versions.reconcile(namespace, name)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueClosed:
                return
            kind, namespace, name = key
            started = time.perf_counter()
            try:
                outcome = await self._dispatch(key)
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            except Exception as error:
                delay = self.queue.retry_delay(key)
                reason = type(error).__name__
                if isinstance(error, ApiError):
                    reason = error.reason or f"HTTP{error.status}"
                self.metrics.reconciles.labels(kind, "error").inc()
                self.metrics.errors.labels(kind, reason).inc()
                self.metrics.retries.labels(kind, reason).inc()
                log.warning(
                    "reconcile_failed",
                    kind=kind,
                    namespace=namespace,
                    name=name,
                    error=str(error),
                    retry_in_s=delay,
                    exc_info=not isinstance(error, ApiError),
                )
                involved = {
                    "apiVersion": "cachefleet.io/v1alpha1",
                    "kind": kind,
                    "metadata": {"namespace": namespace, "name": name},
                }
                await self.events.post_error_once(
                    involved, "ReconcileError", f"{error} (retrying in {delay:.0f}s)"
                )
                self.queue.add(key, after=delay)
            else:
                result = "stalled" if outcome.retry else "success"
                self.metrics.reconciles.labels(kind, result).inc()
                if outcome.failure is not None:
                    delay = self.queue.retry_delay(key)
                    if outcome.requeue_after is not None:
                        delay = min(delay, outcome.requeue_after)
                    self.metrics.retries.labels(kind, outcome.failure).inc()
                    log.info(
                        "reconcile_retry",
                        kind=kind,
                        namespace=namespace,
                        name=name,
                        reason=outcome.failure,
                        failures=self.queue.failures(key),
                        retry_in_s=round(delay, 2),
                    )
                    self.queue.add(key, after=delay)
                else:
                    self.queue.forget(key)
                    self.events.clear_error(kind, namespace, name)
                    if outcome.requeue_after is not None:
                        self.queue.add(key, after=outcome.requeue_after)
            finally:
                self.metrics.duration.labels(kind).observe(time.perf_counter() - started)
                self.queue.done(key)
                self._update_gauges()
                log.debug("reconciled", kind=kind, namespace=namespace, name=name)
