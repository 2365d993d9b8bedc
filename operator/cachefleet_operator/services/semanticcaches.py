"""One level-based reconcile pass of a SemanticCache.

```
read cache ─► resolve ModelVersions, check Secrets ─┬─ problems ─► no changes, Stalled, backoff
                                                   └─ paused ───► no changes, Paused
                                                   └─ else ─────► lifecycle step (rollover,
                           warm-up, purge, re-embedding: services/lifecycle/) ─► render (what
                           every node serves) ─► apply (SSA; the node ConfigMap held while a
                           switch is unverified) ─► prune
observe workloads (apply answers or GET) + node health + hit-rate report
      ─► conditions/status ─► write /status only if it differs ─► Events for transitions
```
Every step is idempotent: a pass can run any time, as often as wanted, and converges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from pydantic import ValidationError

from cachefleet_operator.adapters.kube import (
    MILVUSES,
    MODELVERSIONS,
    SECRETS,
    SEMANTICCACHES,
    ApiError,
    ResourceType,
    resource_for,
)
from cachefleet_operator.api.v1alpha1 import ModelVersion, SemanticCache
from cachefleet_operator.api.v1alpha1.semanticcache import SemanticCacheStatus
from cachefleet_operator.domain.conditions import (
    ConditionType,
    MilvusClusterState,
    Problem,
    WorkloadState,
    find_condition,
    milvus_cluster_state,
    workload_state,
)
from cachefleet_operator.domain.durations import format_duration
from cachefleet_operator.domain.endpoints import ENDPOINTS_ANNOTATION
from cachefleet_operator.domain.lifecycle.embedding import (
    embedding_migration_refused,
    embedding_models,
)
from cachefleet_operator.domain.lifecycle.state import Lifecycle
from cachefleet_operator.domain.manifests import MANAGED_BY, Manifest
from cachefleet_operator.domain.naming import Component, active_cache_namespace, child_name
from cachefleet_operator.domain.nodeconfig import SpecError, embedding_model
from cachefleet_operator.domain.render import (
    FIELD_MANAGER,
    MILVUS_CLUSTER,
    FleetView,
    owned_kinds,
    render_children,
)
from cachefleet_operator.domain.status import (
    EventSpec,
    cache_transition_events,
    expected_workloads,
    invalid_cache_conditions,
    observe_cache,
    referenced_secrets,
    secret_problems,
    semantic_cache_status,
    status_differs,
)
from cachefleet_operator.services.context import Outcome, Service, ServiceContext
from cachefleet_operator.services.events import object_reference
from cachefleet_operator.services.lifecycle import LifecycleRunner
from cachefleet_operator.services.stats import StatsCollector, StatsTarget

__all__ = ["CacheReconciler", "parse_model_versions", "stats_target"]

log = structlog.get_logger("cachefleet.semanticcache")

CacheKey = tuple[str, str]
_WORKLOAD_KINDS = ("StatefulSet", "Deployment")
#: What a switch not yet seen by every node must not change (the node config and its pods).
_NODE_CONFIG_KINDS = ("ConfigMap", "Deployment")
#: A Milvus of the Milvus Operator is not watched (its CRD may be missing): until it is
#: Healthy for its latest spec it is read again this often, then every stats interval.
MILVUS_POLL_S = 10.0


def parse_model_versions(items: Sequence[Mapping[str, Any]]) -> list[ModelVersion]:
    """The ModelVersions that parse (an invalid one is as good as missing for a cache)."""
    parsed = []
    for item in items:
        try:
            parsed.append(ModelVersion.model_validate(item))
        except ValidationError:
            log.warning("invalid_model_version", name=item.get("metadata", {}).get("name"))
    return parsed


def stats_target(
    cache: SemanticCache,
    resolved: Sequence[ModelVersion],
    served: Mapping[str, str] | None = None,
) -> StatsTarget:
    """What the stats collector needs to know about a cache (`served`: ModelVersion → the
    namespace the fleet serves it from; default: the ModelVersions' own)."""
    namespace = cache.metadata.namespace or ""
    served = served or {}
    return StatsTarget(
        namespace=namespace,
        name=cache.metadata.name,
        node_service=child_name(cache.metadata.name, Component.NODE),
        endpoints_annotation=cache.metadata.annotations.get(ENDPOINTS_ANNOTATION),
        cache_namespaces=tuple(
            served.get(mv.metadata.name) or active_cache_namespace(mv) for mv in resolved
        ),
        external_redis=cache.spec.exact_tier.external is not None,
        external_milvus=cache.spec.semantic_tier.external is not None,
        auth=cache.spec.auth,
    )


def _instance_selector(name: str) -> str:
    return f"app.kubernetes.io/instance={name},app.kubernetes.io/managed-by={MANAGED_BY}"


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences", []))


def _uses_milvus_operator(cache: SemanticCache) -> bool:
    managed = cache.spec.semantic_tier.managed
    return managed is not None and managed.engine == "milvusOperator"


class CacheReconciler(Service):
    """Reconciles SemanticCaches (the only writer of their status and children)."""

    def __init__(
        self, context: ServiceContext, *, collector: StatsCollector, lifecycle: LifecycleRunner
    ) -> None:
        super().__init__(context)
        self._collector = collector
        self._lifecycle = lifecycle
        self._window_label = format_duration(context.config.hit_rate_window)
        self._rendered: dict[CacheKey, frozenset[tuple[str, str]]] = {}
        self._pruned_at: dict[CacheKey, float] = {}

    def forget(self, key: CacheKey) -> None:
        self._rendered.pop(key, None)
        self._pruned_at.pop(key, None)
        self._collector.forget(key)

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        key = (namespace, name)
        body = await self._kube.get(SEMANTICCACHES, namespace, name)
        if body is None:
            self.forget(key)
            return Outcome()
        if body.get("metadata", {}).get("deletionTimestamp"):
            return Outcome()  # the deletion handler and the garbage collector own it now
        try:
            cache = SemanticCache.model_validate(body)
        except ValidationError as error:
            return await self._stall_invalid(
                SEMANTICCACHES, body, error, SemanticCacheStatus, invalid_cache_conditions
            )

        model_versions = parse_model_versions(await self._kube.list(MODELVERSIONS, namespace))
        by_name = {mv.metadata.name: mv for mv in model_versions}
        refs = cache.spec.model_versions
        resolved = [by_name[ref.name] for ref in refs if ref.name in by_name]
        missing = [ref.name for ref in refs if ref.name not in by_name]
        problems = await self._secret_problems(cache)

        workloads: dict[Component, WorkloadState] = {}
        milvus: dict[str, MilvusClusterState] = {}  # the Milvus Operator's, once read
        lifecycle = Lifecycle.of(cache.status)
        rolled = False
        requeue = self._config.resync_interval
        failure: str | None = None
        progress: float | None = None  # lifecycle work in progress looks again this soon
        if not cache.spec.paused and not missing and not problems:
            try:
                model = embedding_model(resolved)
            except SpecError as error:
                problems.append(Problem(error.reason, str(error)))
            else:
                step = await self._lifecycle.run(
                    cache, body, model_versions, lifecycle, embedding_model=model
                )
                lifecycle, rolled, failure = step.lifecycle, step.completed, step.failure
                progress = step.requeue_after
                if progress is not None:
                    requeue = min(requeue, progress)
                fleet = FleetView(
                    served=lifecycle.served_namespaces(),
                    embedding=embedding_models(lifecycle, model),
                )
                try:
                    children = render_children(cache, model_versions, fleet)
                except SpecError as error:
                    problems.append(Problem(error.reason, str(error)))
                else:
                    applied = await self._without_missing_kinds(cache, children, milvus, problems)
                    problem = await self._apply(
                        cache, applied, workloads, milvus, hold_nodes=step.hold_nodes
                    )
                    if problem is not None:
                        problems.append(problem)
                    else:
                        await self._prune_if_due(cache, children)
                refused = embedding_migration_refused(cache, lifecycle, model)
                if refused is not None:  # the fleet keeps serving the current model
                    problems.append(Problem("EmbeddingMigrationRefused", refused))
        await self._observe(cache, workloads, milvus)
        milvus_cluster = next(iter(milvus.values()), None)
        if milvus_cluster is not None and milvus_cluster.installed:
            poll = self._config.stats_interval if milvus_cluster.settled else MILVUS_POLL_S
            requeue = min(requeue, poll)

        report = self._collector.report(key)
        health = self._collector.health(key)
        observed = observe_cache(
            cache,
            workloads,
            health=health,
            missing_model_versions=missing,
            problems=problems,
            hit_rate=report.rate if report is not None else None,
            hit_rate_window=(report.window if report and report.window else self._window_label),
            milvus_cluster=milvus_cluster,
        )
        status = semantic_cache_status(
            cache,
            resolved,
            observed,
            report=report,
            now=self._clock(),
            lifecycle=lifecycle,
            rolled=rolled,
        )
        await self._write_status(cache, body, status)
        self._collector.track(
            stats_target(cache, resolved, lifecycle.served_namespaces()),
            nodes_available=observed.nodes.available,
        )

        ready = find_condition(status.conditions, ConditionType.READY)
        if missing:
            failure = "ModelVersionNotFound"
        elif problems:
            failure = problems[0].reason
        return Outcome(
            # a failed pass retries with backoff, or sooner where other work goes on
            requeue_after=progress if failure else requeue,
            failure=failure,
            ready=ready.status if ready else "Unknown",
        )

    # --- steps --------------------------------------------------------------------------------

    async def _secret_problems(self, cache: SemanticCache) -> list[Problem]:
        refs = referenced_secrets(cache)
        found: dict[str, frozenset[str] | None] = {}
        for secret in {ref.name for ref in refs}:
            obj = await self._kube.get(SECRETS, cache.metadata.namespace or "", secret)
            # Only the key names are kept; the values are dropped here.
            found[secret] = None if obj is None else frozenset((obj.get("data") or {}).keys())
        return secret_problems(refs, found)

    async def _without_missing_kinds(
        self,
        cache: SemanticCache,
        children: Sequence[Manifest],
        milvus: dict[str, MilvusClusterState],
        problems: list[Problem],
    ) -> list[Manifest]:
        """`children` less a `Milvus` the API server does not serve (the Milvus Operator is
        not installed): a `MilvusOperatorMissing` problem instead, the rest is applied."""
        if not _uses_milvus_operator(cache) or await self._kube.serves(MILVUSES):
            return list(children)
        name = child_name(cache.metadata.name, Component.MILVUS_CLUSTER)
        missing = milvus[name] = MilvusClusterState(name, installed=False)
        problems.append(Problem("MilvusOperatorMissing", missing.describe()))
        return [child for child in children if child["kind"] != MILVUS_CLUSTER.kind]

    async def _apply(
        self,
        cache: SemanticCache,
        children: Sequence[Manifest],
        workloads: dict[Component, WorkloadState],
        milvus: dict[str, MilvusClusterState],
        *,
        hold_nodes: bool = False,
    ) -> Problem | None:
        expected = {(ref.kind, ref.name): ref.component for ref in expected_workloads(cache)}
        node_children = child_name(cache.metadata.name, Component.NODE)
        for child in children:
            kind, child_name_ = child["kind"], child["metadata"]["name"]
            if hold_nodes and kind in _NODE_CONFIG_KINDS and child_name_ == node_children:
                continue  # observed below; applied once every node reported the switch
            try:
                stored = await self._kube.apply(child, field_manager=FIELD_MANAGER)
            except ApiError as error:
                if error.retryable:
                    raise
                reason = "Forbidden" if error.status == 403 else "ApplyRejected"
                return Problem(reason, f"{kind} {child_name_}: {error.message or error}")
            self._metrics.children_applied.labels(kind).inc()
            if kind == MILVUS_CLUSTER.kind:
                milvus[child_name_] = milvus_cluster_state(child_name_, stored)
            component = expected.get((kind, child_name_))
            if component is not None and kind in _WORKLOAD_KINDS:
                workloads[component] = workload_state(kind, child_name_, stored)
        return None

    async def _prune_if_due(self, cache: SemanticCache, children: Sequence[Manifest]) -> None:
        key = (cache.metadata.namespace or "", cache.metadata.name)
        rendered = frozenset((c["kind"], c["metadata"]["name"]) for c in children)
        now = self._monotonic()
        due = (
            self._rendered.get(key) != rendered
            or now - self._pruned_at.get(key, float("-inf")) >= self._config.resync_interval
        )
        if not due:
            return
        namespace, uid = key[0], cache.metadata.uid or ""
        leftovers: list[tuple[ResourceType, Mapping[str, Any]]] = []
        for child_kind in owned_kinds():
            rt = resource_for(child_kind.api_version, child_kind.kind)
            items = await self._kube.list(rt, namespace, label_selector=_instance_selector(key[1]))
            leftovers += [(rt, item) for item in items]
        milvus_name = child_name(key[1], Component.MILVUS_CLUSTER)
        # A Milvus of the Milvus Operator is looked up by name (its kind is not listed).
        if (MILVUS_CLUSTER.kind, milvus_name) not in rendered and await self._kube.serves(MILVUSES):
            found = await self._kube.get(MILVUSES, namespace, milvus_name)
            leftovers += [(MILVUSES, found)] if found is not None else []
        for rt, leftover in leftovers:
            metadata = leftover.get("metadata", {})
            if (rt.kind, metadata.get("name")) in rendered or not _owned_by(leftover, uid):
                continue
            if await self._kube.delete(rt, namespace, metadata["name"], uid=metadata.get("uid")):
                self._metrics.children_pruned.labels(rt.kind).inc()
                await self._events.post(
                    object_reference(cache.to_api()),
                    EventSpec(
                        "Normal",
                        "Pruned",
                        f"deleted {rt.kind} {metadata['name']}: no longer in the spec",
                    ),
                )
        self._rendered[key] = rendered
        self._pruned_at[key] = now

    async def _observe(
        self,
        cache: SemanticCache,
        workloads: dict[Component, WorkloadState],
        milvus: dict[str, MilvusClusterState],
    ) -> None:
        """Workloads and a Milvus not seen in an apply answer (paused, stalled) are read."""
        namespace = cache.metadata.namespace or ""
        if _uses_milvus_operator(cache) and not milvus:
            name = child_name(cache.metadata.name, Component.MILVUS_CLUSTER)
            installed = await self._kube.serves(MILVUSES)
            stored = await self._kube.get(MILVUSES, namespace, name) if installed else None
            milvus[name] = milvus_cluster_state(name, stored, installed=installed)
        for ref in expected_workloads(cache):
            if ref.component in workloads:
                continue
            rt = resource_for("apps/v1", ref.kind)
            workloads[ref.component] = workload_state(
                ref.kind, ref.name, await self._kube.get(rt, namespace, ref.name)
            )

    async def _write_status(
        self, cache: SemanticCache, body: Mapping[str, Any], status: SemanticCacheStatus
    ) -> None:
        namespace, name = cache.metadata.namespace or "", cache.metadata.name
        if status_differs(cache.status, status):
            try:
                await self._kube.apply_status(
                    SEMANTICCACHES, namespace, name, status.to_api(), field_manager=FIELD_MANAGER
                )
            except ApiError:
                self._metrics.status_writes.labels("SemanticCache", "failed").inc()
                raise
            self._metrics.status_writes.labels("SemanticCache", "written").inc()
        reference = object_reference(body)
        for event in cache_transition_events(cache.status.conditions, status.conditions):
            await self._events.post(reference, event)
