"""Status of both kinds, assembled from observations; what a reconcile must look at.

Pure functions the services call once per pass: which Secrets and workloads a cache depends
on, the `ObservedCache` for the conditions, the new status (hit rates kept until a new report
is published, external tiers' conditions until the nodes are asked again), whether it differs
from the stored one, and the Events worth posting for the transitions between the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from cachefleet_operator.api.v1alpha1 import ActiveNamespace, Condition, ModelVersion, SemanticCache
from cachefleet_operator.api.v1alpha1.modelversion import ModelVersionStatus
from cachefleet_operator.api.v1alpha1.semanticcache import HitRate, Savings, SemanticCacheStatus
from cachefleet_operator.domain.conditions import (
    ConditionType,
    ConditionUpdate,
    ExternalTier,
    InNodeTier,
    MilvusClusterState,
    ObservedCache,
    Problem,
    TierState,
    WorkloadState,
    find_condition,
    merge_conditions,
    semantic_cache_conditions,
)
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.hitrate import HitRateReport
from cachefleet_operator.domain.lifecycle.modelversion import ModelVersionPlan
from cachefleet_operator.domain.lifecycle.state import Lifecycle, rolling_over_condition
from cachefleet_operator.domain.naming import Component, active_cache_namespace, child_name

__all__ = [
    "MODEL_MAX_LENGTH",
    "EventSpec",
    "SecretRef",
    "TierHealth",
    "WorkloadRef",
    "cache_transition_events",
    "expected_workloads",
    "invalid_cache_conditions",
    "invalid_model_version_conditions",
    "model_summary",
    "model_version_conditions",
    "model_version_status",
    "observe_cache",
    "referenced_secrets",
    "secret_problems",
    "semantic_cache_status",
    "status_differs",
]

MODEL_MAX_LENGTH = 1024


# --- what a cache depends on ----------------------------------------------------------------


@dataclass(frozen=True)
class SecretRef:
    """A Secret (and optionally one of its keys) that the cache's pods or the operator read."""

    name: str
    key: str | None
    field: str


def referenced_secrets(cache: SemanticCache) -> list[SecretRef]:
    """Every Secret key the spec names, in spec order."""
    spec = cache.spec
    refs: list[SecretRef] = []
    if spec.exact_tier.external is not None:
        ref = spec.exact_tier.external.url_secret_ref
        refs.append(SecretRef(ref.name, ref.key, "spec.exactTier.external.urlSecretRef"))
    milvus = spec.semantic_tier.external
    if milvus is not None and milvus.token_secret_ref is not None:
        ref = milvus.token_secret_ref
        refs.append(SecretRef(ref.name, ref.key, "spec.semanticTier.external.tokenSecretRef"))
    if spec.upstream.api_key_secret_ref is not None:
        ref = spec.upstream.api_key_secret_ref
        refs.append(SecretRef(ref.name, ref.key, "spec.upstream.apiKeySecretRef"))
    if spec.auth is not None:
        name = spec.auth.api_keys_secret_ref.name
        refs += [
            SecretRef(name, tenant.name, "spec.auth.apiKeysSecretRef")
            for tenant in spec.auth.tenants
        ]
    return refs


def secret_problems(
    refs: Sequence[SecretRef], found: Mapping[str, frozenset[str] | None]
) -> list[Problem]:
    """Problems for Secrets that are missing (`found[name] is None`) or lack a key."""
    problems: list[Problem] = []
    missing: list[str] = []
    for ref in refs:
        keys = found.get(ref.name)
        if keys is None:
            if ref.name not in missing:
                missing.append(ref.name)
                problems.append(
                    Problem("SecretNotFound", f"Secret {ref.name} ({ref.field}) not found")
                )
        elif ref.key is not None and ref.key not in keys:
            problems.append(
                Problem(
                    "SecretKeyNotFound", f"Secret {ref.name} has no key {ref.key} ({ref.field})"
                )
            )
    return problems


@dataclass(frozen=True)
class WorkloadRef:
    """A StatefulSet or Deployment the operator runs for one component of the fleet."""

    component: Component
    kind: str
    name: str


def expected_workloads(cache: SemanticCache) -> list[WorkloadRef]:
    """The workloads the spec calls for (whether or not they exist yet)."""
    name = cache.metadata.name
    spec = cache.spec
    refs: list[WorkloadRef] = []
    if spec.exact_tier.managed is not None:
        refs.append(WorkloadRef(Component.REDIS, "StatefulSet", child_name(name, Component.REDIS)))
    milvus = spec.semantic_tier.managed
    if milvus is not None and milvus.engine == "standalone":
        refs.append(
            WorkloadRef(Component.MILVUS, "StatefulSet", child_name(name, Component.MILVUS))
        )
    if spec.embedding.gpu is not None:
        refs.append(
            WorkloadRef(Component.EMBEDDING, "Deployment", child_name(name, Component.EMBEDDING))
        )
    refs.append(WorkloadRef(Component.NODE, "Deployment", child_name(name, Component.NODE)))
    return refs


# --- observation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TierHealth:
    """External tiers as the cache nodes report them (None: no node answered).

    `collected`: whether the nodes were asked at all since the operator started. Without a
    collection nothing new is known, so the tier conditions stored before stand (see
    `observe_cache`); a collection in which no node answered is an observation (Unknown)."""

    redis: bool | None = None
    milvus: bool | None = None
    detail: str = ""
    collected: bool = False


def _workload(
    workloads: Mapping[Component, WorkloadState], component: Component, kind: str, name: str
) -> WorkloadState:
    return workloads.get(component) or WorkloadState(kind=kind, name=name, exists=False)


def _carried(cache: SemanticCache, condition_type: str, health: TierHealth) -> Condition | None:
    """The stored condition of an external tier that stands until the nodes are asked again:
    only without any collection since the operator started, and only a True or False that
    was observed for the current generation (a changed spec is a new observation to make)."""
    if health.collected:
        return None
    stored = find_condition(cache.status.conditions, condition_type)
    if stored is None or stored.status == "Unknown":
        return None
    if stored.observed_generation != (cache.metadata.generation or 0):
        return None
    return stored


def observe_cache(
    cache: SemanticCache,
    workloads: Mapping[Component, WorkloadState],
    *,
    health: TierHealth,
    missing_model_versions: Sequence[str] = (),
    problems: Sequence[Problem] = (),
    hit_rate: float | None = None,
    hit_rate_window: str = "15m",
    milvus_cluster: MilvusClusterState | None = None,
) -> ObservedCache:
    """The `ObservedCache` of a pass: workloads by component, the Milvus Operator's `Milvus`
    as read (`milvus_cluster`; None: not read, as if it did not exist), external tiers by node
    health (or, before the first collection since the operator started, as stored), the
    nodes with the minimum the spec declares."""
    spec = cache.spec
    name = cache.metadata.name
    exact: TierState
    if spec.exact_tier.managed is not None:
        exact = _workload(
            workloads, Component.REDIS, "StatefulSet", child_name(name, Component.REDIS)
        )
    else:
        exact = ExternalTier(
            "external Redis",
            health.redis,
            health.detail,
            carried=_carried(cache, ConditionType.EXACT_TIER_READY, health),
        )
    semantic: TierState
    managed_milvus = spec.semantic_tier.managed
    if managed_milvus is not None and managed_milvus.engine == "milvusOperator":
        semantic = milvus_cluster or MilvusClusterState(
            child_name(name, Component.MILVUS_CLUSTER), installed=True
        )
    elif managed_milvus is not None:
        semantic = _workload(
            workloads, Component.MILVUS, "StatefulSet", child_name(name, Component.MILVUS)
        )
    elif spec.semantic_tier.external is not None:
        semantic = ExternalTier(
            "external Milvus",
            health.milvus,
            health.detail,
            carried=_carried(cache, ConditionType.SEMANTIC_TIER_READY, health),
        )
    else:
        semantic = InNodeTier("Milvus Lite (embedded)")
    embedding: TierState
    if spec.embedding.gpu is not None:
        embedding = _workload(
            workloads, Component.EMBEDDING, "Deployment", child_name(name, Component.EMBEDDING)
        )
    else:
        embedding = InNodeTier("the local embedder")
    nodes = _workload(workloads, Component.NODE, "Deployment", child_name(name, Component.NODE))
    if spec.nodes.autoscaling.enabled:
        # The autoscaler owns the Deployment's replicas (1 until its first pass): the fleet
        # serves as declared from `minReplicas` ready nodes on.
        nodes = replace(nodes, minimum=spec.nodes.autoscaling.min_replicas)
    return ObservedCache(
        exact_tier=exact,
        semantic_tier=semantic,
        embedding=embedding,
        nodes=nodes,
        paused=spec.paused,
        missing_model_versions=tuple(missing_model_versions),
        problems=tuple(problems),
        hit_rate=hit_rate,
        hit_rate_target=spec.targets.hit_rate if spec.targets is not None else None,
        hit_rate_window=hit_rate_window,
    )


# --- status ---------------------------------------------------------------------------------


def model_summary(
    model_versions: Sequence[ModelVersion], served_versions: Mapping[str, str] | None = None
) -> str | None:
    """`model@version` of each ModelVersion, comma-joined (what the MODEL column shows).

    `served_versions`: the version each ModelVersion's active namespace serves (it changes
    when every node has switched), else the spec's."""
    served = served_versions or {}
    text = ",".join(
        f"{mv.spec.model}@{served.get(mv.metadata.name) or mv.spec.version}"
        for mv in model_versions
    )
    if len(text) > MODEL_MAX_LENGTH:
        text = text[: MODEL_MAX_LENGTH - 3] + "..."
    return text or None


def semantic_cache_status(
    cache: SemanticCache,
    resolved: Sequence[ModelVersion],
    observed: ObservedCache,
    *,
    report: HitRateReport | None,
    now: datetime,
    lifecycle: Lifecycle | None = None,
    rolled: bool = False,
) -> SemanticCacheStatus:
    """The status after a pass. Without a (new) hit-rate report the stored rates stay.

    `lifecycle`: what the fleet serves and the rollovers in progress (default: each
    ModelVersion's `status.cacheNamespace`, nothing in progress); `rolled`: a rollover or
    migration completed in this pass."""
    previous = cache.status
    generation = cache.metadata.generation or 0
    updates = semantic_cache_conditions(observed)
    if lifecycle is not None:
        rolling_over = rolling_over_condition(
            lifecycle,
            find_condition(previous.conditions, ConditionType.ROLLING_OVER),
            completed=rolled,
        )
        updates = [*_reconciling_while(rolling_over, updates), rolling_over]
    if report is None and observed.hit_rate_target is not None:
        # No report since the operator started: the stored hit-rate verdict stands.
        kept = find_condition(previous.conditions, ConditionType.HIT_RATE_BELOW_TARGET)
        if kept is not None:
            updates = [u for u in updates if u.type != ConditionType.HIT_RATE_BELOW_TARGET]
    conditions = merge_conditions(previous.conditions, updates, generation=generation, now=now)
    hit_rate, entries, savings = previous.hit_rate, previous.entries, previous.savings
    if report is not None:
        if report.overall is not None:
            hit_rate = HitRate(
                overall=report.overall,
                exact=report.exact,
                semantic=report.semantic,
                window=report.window,
                observed_at=report.observed_at,
            )
        if report.entries is not None:
            entries = report.entries
        if report.tokens_saved is not None or report.dollars_saved is not None:
            savings = Savings(tokens=report.tokens_saved, dollars=report.dollars_saved)
    if lifecycle is None:
        active = [
            ActiveNamespace(
                model_version=mv.metadata.name, cache_namespace=active_cache_namespace(mv)
            )
            for mv in resolved
        ]
        rollovers, retained, embedding = [], [], previous.embedding
    else:
        order = {mv.metadata.name: index for index, mv in enumerate(resolved)}
        active = sorted(lifecycle.active, key=lambda a: order.get(a.model_version, len(order)))
        rollovers = list(lifecycle.rollovers)
        retained = list(lifecycle.retained)
        embedding = lifecycle.embedding
    versions = {a.model_version: a.version for a in active if a.version}
    return SemanticCacheStatus(
        observed_generation=generation,
        conditions=conditions,
        hit_rate=hit_rate,
        entries=entries,
        savings=savings,
        model=model_summary(resolved, versions),
        active_namespaces=active,
        rollovers=rollovers,
        retained_namespaces=retained,
        embedding=embedding,
        ready_nodes=observed.nodes.ready if observed.nodes.exists else 0,
    )


def _reconciling_while(
    rolling_over: ConditionUpdate, updates: Sequence[ConditionUpdate]
) -> list[ConditionUpdate]:
    """`updates` with `Reconciling=True` (reason `RollingOver`) while a rollover or an
    embedding migration moves on a cache that is otherwise reconciled.

    kstatus (Flux) reads `Reconciling=True` as InProgress: the operator is still acting on a
    ModelVersion change, so a `wait` on the cache lasts until every node serves the new
    namespace. `Ready` is not touched (the fleet serves meanwhile, Argo CD stays Healthy);
    `Paused` and `Stalled` keep their own `Reconciling=False`."""
    if rolling_over.status != "True":
        return list(updates)
    return [
        ConditionUpdate(ConditionType.RECONCILING, "True", "RollingOver", rolling_over.message)
        if update.type == ConditionType.RECONCILING and update.reason == "Reconciled"
        else update
        for update in updates
    ]


def status_differs(
    old: SemanticCacheStatus | ModelVersionStatus, new: SemanticCacheStatus | ModelVersionStatus
) -> bool:
    """Whether writing `new` would change what is stored."""
    if type(old) is not type(new):
        return True
    return bool(old.to_api() != new.to_api())


def _status_of(conditions: Sequence[Condition], condition_type: str) -> tuple[str, str, str]:
    found = find_condition(conditions, condition_type)
    return (found.status, found.reason, found.message) if found else ("Unknown", "", "")


def cache_transition_events(old: Sequence[Condition], new: Sequence[Condition]) -> list[EventSpec]:
    """Events for what flipped between two condition lists (nothing for unchanged ones)."""
    events: list[EventSpec] = []
    old_stalled, new_stalled = (
        _status_of(old, ConditionType.STALLED),
        _status_of(new, ConditionType.STALLED),
    )
    if new_stalled[0] == "True" and old_stalled[:2] != new_stalled[:2]:
        events.append(EventSpec("Warning", new_stalled[1], new_stalled[2]))
    elif old_stalled[0] == "True" and new_stalled[0] != "True":
        events.append(EventSpec("Normal", "Unstalled", "the problem is resolved; reconciling"))
    old_reconciling = _status_of(old, ConditionType.RECONCILING)
    new_reconciling = _status_of(new, ConditionType.RECONCILING)
    if new_reconciling[1] == "Paused" and old_reconciling[1] != "Paused":
        events.append(EventSpec("Normal", "Paused", new_reconciling[2]))
    elif old_reconciling[1] == "Paused" and new_reconciling[1] != "Paused":
        events.append(EventSpec("Normal", "Resumed", "spec.paused is false: reconciling again"))
    old_ready, new_ready = (
        _status_of(old, ConditionType.READY),
        _status_of(new, ConditionType.READY),
    )
    if old_ready[0] != new_ready[0] and new_ready[1] not in ("", "Pending"):
        if new_ready[0] == "True":
            events.append(EventSpec("Normal", "Ready", new_ready[2]))
        elif new_ready[0] == "False" and old_ready[0] == "True":
            events.append(EventSpec("Warning", new_ready[1], new_ready[2]))
    old_rate = _status_of(old, ConditionType.HIT_RATE_BELOW_TARGET)
    new_rate = _status_of(new, ConditionType.HIT_RATE_BELOW_TARGET)
    if new_rate[0] == "True" and old_rate[0] != "True":
        events.append(EventSpec("Warning", "HitRateBelowTarget", new_rate[2]))
    elif old_rate[0] == "True" and new_rate[0] == "False":
        events.append(EventSpec("Normal", "HitRateTargetMet", new_rate[2]))
    return events


# --- ModelVersion ---------------------------------------------------------------------------


def model_version_conditions(cache_namespace: str) -> list[ConditionUpdate]:
    """A ModelVersion that parsed is resolved: it names its active cache namespace."""
    return [
        ConditionUpdate("Ready", "True", "Resolved", f"serving cache namespace {cache_namespace}"),
        ConditionUpdate("Resolved", "True", "Resolved", f"cache namespace {cache_namespace}"),
        ConditionUpdate("Stalled", "False", "NoProblems", ""),
    ]


def invalid_cache_conditions(message: str) -> list[ConditionUpdate]:
    """A stored SemanticCache the models reject: not ready and stalled until its spec is
    fixed."""
    return [
        ConditionUpdate("Ready", "False", "InvalidSpec", message),
        ConditionUpdate("Stalled", "True", "InvalidSpec", message),
    ]


def invalid_model_version_conditions(message: str) -> list[ConditionUpdate]:
    """A stored ModelVersion the models reject: not ready and stalled until its spec is fixed
    (`Stalled=True` is what kstatus, and so Flux, reads as failed)."""
    return [
        ConditionUpdate("Ready", "False", "InvalidSpec", message),
        ConditionUpdate("Resolved", "False", "InvalidSpec", message),
        ConditionUpdate("Stalled", "True", "InvalidSpec", message),
    ]


def model_version_status(
    model_version: ModelVersion, plan: ModelVersionPlan, *, now: datetime
) -> ModelVersionStatus:
    """The ModelVersion's status after a pass: its namespace, identity and retained ones."""
    generation = model_version.metadata.generation or 0
    return model_version.status.model_copy(
        update={
            "observed_generation": generation,
            "cache_namespace": plan.cache_namespace,
            "identity": plan.identity,
            "previous_namespaces": plan.previous,
            "conditions": merge_conditions(
                model_version.status.conditions,
                model_version_conditions(plan.cache_namespace),
                generation=generation,
                now=now,
            ),
        }
    )
