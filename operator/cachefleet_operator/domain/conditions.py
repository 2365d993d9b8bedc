"""Status conditions by the Kubernetes API conventions, computed from observed children.

`merge_conditions` behaves like apimachinery's `meta.SetStatusCondition`: `lastTransitionTime`
changes only when a condition's `status` flips; reason, message and `observedGeneration` are
always refreshed. `semantic_cache_conditions` turns plain observations (replica counts, tier
probes, problems the operator found) into the SemanticCache's conditions, `Ready` included:

- `Stalled=True` when the operator cannot go on without a spec or cluster change (a missing
  ModelVersion or Secret); `Ready` is then False with the same reason;
- `Reconciling=True` while a child is created or rolled out (and, set by
  `status.semantic_cache_status`, reason `RollingOver` while a rollover moves); False with
  reason `Paused` while `spec.paused` is set;
- `Ready=True` only when the ModelVersions resolve and every tier and the nodes are ready;
  `False` names the first dependency that is not, `Unknown` when one is not known yet;
- the nodes are ready when the fleet meets its declared minimum: the Deployment's replicas, or
  `autoscaling.minReplicas` (`WorkloadState.minimum`) while the HorizontalPodAutoscaler owns
  the count, so 1 ready node of a Deployment the autoscaler has not scaled up yet is not Ready;
- an observation that is merely missing is not a change: an external tier no node has been
  asked about since the operator started keeps the condition stored before the restart
  (`ExternalTier.carried`: same status, reason and message, so the same `lastTransitionTime`
  and no Event) until a new report exists;
- a `Milvus` of the Milvus Operator (`MilvusClusterState`) is ready when its `status.status`
  is `Healthy`, settled once that status is for its current generation; without the Milvus
  Operator's CRD the semantic tier is False, `MilvusOperatorMissing`;
- `HitRateBelowTarget` is informational and does not affect `Ready`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachefleet_operator.api.v1alpha1 import Condition, ConditionStatus

__all__ = [
    "ConditionType",
    "ConditionUpdate",
    "ExternalTier",
    "InNodeTier",
    "MilvusClusterState",
    "ObservedCache",
    "Problem",
    "TierState",
    "WorkloadState",
    "find_condition",
    "merge_conditions",
    "milvus_cluster_state",
    "semantic_cache_conditions",
    "workload_state",
]


class ConditionType(enum.StrEnum):
    """Condition types of a SemanticCache, in the order status lists them."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    MODEL_VERSIONS_RESOLVED = "ModelVersionsResolved"
    EXACT_TIER_READY = "ExactTierReady"
    SEMANTIC_TIER_READY = "SemanticTierReady"
    EMBEDDING_READY = "EmbeddingReady"
    NODES_READY = "NodesReady"
    ROLLING_OVER = "RollingOver"
    HIT_RATE_BELOW_TARGET = "HitRateBelowTarget"


@dataclass(frozen=True)
class ConditionUpdate:
    """A condition's desired status, reason and message (times are added on merge)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def find_condition(conditions: Sequence[Condition], condition_type: str) -> Condition | None:
    """The condition of that type, if present (absent means Unknown)."""
    return next((c for c in conditions if c.type == condition_type), None)


def merge_conditions(
    existing: Sequence[Condition],
    updates: Sequence[ConditionUpdate],
    *,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """`existing` with `updates` applied, ordered by `ConditionType` then by first appearance.

    A condition keeps its `lastTransitionTime` unless its status changes; conditions of other
    types (set by someone else) are kept as they are.
    """
    stamp = now.astimezone(UTC).replace(microsecond=0)
    merged = {condition.type: condition for condition in existing}
    for update in updates:
        previous = merged.get(update.type)
        if previous is not None and previous.status == update.status:
            transition = previous.last_transition_time
        else:
            transition = stamp
        merged[update.type] = Condition(
            type=update.type,
            status=update.status,
            reason=update.reason,
            message=update.message,
            observed_generation=generation,
            last_transition_time=transition,
        )
    rank = {condition_type.value: index for index, condition_type in enumerate(ConditionType)}
    order = list(merged)
    return sorted(merged.values(), key=lambda c: (rank.get(c.type, len(rank)), order.index(c.type)))


# --- observations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadState:
    """Observed state of a StatefulSet or Deployment the operator created."""

    kind: str
    name: str
    exists: bool
    desired: int = 0
    ready: int = 0
    updated: int = 0
    generation_observed: bool = True
    #: The declared minimum when it is not the workload's own `replicas` (a Deployment whose
    #: count an autoscaler owns: `autoscaling.minReplicas`); None: `desired` is the minimum.
    minimum: int | None = None

    @property
    def required(self) -> int:
        """Ready replicas the workload needs to serve as declared."""
        return self.desired if self.minimum is None else self.minimum

    @property
    def available(self) -> bool:
        """The declared number of replicas is ready (a rollout or scale-up may go on)."""
        return self.exists and self.required > 0 and self.ready >= self.required

    @property
    def settled(self) -> bool:
        """Available, every replica ready, and the latest spec rolled out to every replica."""
        return (
            self.available
            and self.ready >= self.desired
            and self.generation_observed
            and self.updated >= self.desired
        )

    def describe(self) -> str:
        """`StatefulSet chat-redis: 1/1 ready` (`…: 1/1 ready, minimum 3` when an autoscaler
        has not reached the declared minimum, or is above it)."""
        if not self.exists:
            return f"{self.kind} {self.name} does not exist yet"
        text = f"{self.kind} {self.name}: {self.ready}/{self.desired} ready"
        if self.minimum is not None and self.minimum != self.desired:
            text += f", minimum {self.minimum}"
        return text


def workload_state(kind: str, name: str, obj: Mapping[str, Any] | None) -> WorkloadState:
    """Read a StatefulSet or Deployment as the API returned it (None: not found)."""
    if obj is None:
        return WorkloadState(kind=kind, name=name, exists=False)
    spec, status = obj.get("spec", {}), obj.get("status", {})
    generation = obj.get("metadata", {}).get("generation", 0)
    return WorkloadState(
        kind=kind,
        name=name,
        exists=True,
        desired=int(spec.get("replicas", 1)),
        ready=int(status.get("readyReplicas", 0)),
        updated=int(status.get("updatedReplicas", 0)),
        generation_observed=int(status.get("observedGeneration", 0)) >= int(generation),
    )


@dataclass(frozen=True)
class ExternalTier:
    """A tier the operator does not run; `reachable` as the cache nodes report it.

    `carried`: the tier's condition as stored before the operator started, for a tier no node
    has been asked about since (no report is not a new observation); it stands, unchanged,
    while `reachable` is None. None: nothing to carry (a report exists, or none was stored).
    """

    what: str
    reachable: bool | None = None
    detail: str = ""
    carried: Condition | None = None


@dataclass(frozen=True)
class MilvusClusterState:
    """A `Milvus` (milvus.io/v1beta1) the Milvus Operator runs for the fleet, as last read.

    `installed`: the API server serves the Milvus Operator's kind (its CRD is installed)."""

    name: str
    installed: bool
    exists: bool = False
    status: str = ""
    ready_message: str = ""
    generation_observed: bool = True

    @property
    def available(self) -> bool:
        """The Milvus Operator reports the whole cluster Healthy."""
        return self.exists and self.status == "Healthy"

    @property
    def settled(self) -> bool:
        """Healthy, and the Milvus Operator has acted on the latest spec."""
        return self.available and self.generation_observed

    def describe(self) -> str:
        """`Milvus chat-milvus: Healthy` (with the `MilvusReady` message when not)."""
        if not self.installed:
            return (
                f"Milvus {self.name}: the Milvus Operator is not installed (the API server "
                "does not serve milvuses.milvus.io/v1beta1); install it, or use "
                "semanticTier.managed.engine standalone"
            )
        if not self.exists:
            return f"Milvus {self.name} does not exist yet"
        text = f"Milvus {self.name}: {self.status or 'no status yet'}"
        if self.ready_message and not self.available:
            text += f" ({self.ready_message})"
        return text


def milvus_cluster_state(
    name: str, obj: Mapping[str, Any] | None, *, installed: bool = True
) -> MilvusClusterState:
    """Read a `Milvus` as the API returned it (None: not found): `status.status` and the
    `MilvusReady` condition's reason and message."""
    if obj is None or not installed:
        return MilvusClusterState(name=name, installed=installed)
    status = obj.get("status") or {}
    ready: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "MilvusReady"), {}
    )
    message = ": ".join(str(ready[key]) for key in ("reason", "message") if ready.get(key))
    generation = int(obj.get("metadata", {}).get("generation", 0))
    return MilvusClusterState(
        name=name,
        installed=True,
        exists=True,
        status=str(status.get("status") or ""),
        ready_message=message,
        generation_observed=int(status.get("observedGeneration", 0)) >= generation,
    )


@dataclass(frozen=True)
class InNodeTier:
    """A tier that runs inside each cache node (Milvus Lite, the local embedder)."""

    what: str


TierState = WorkloadState | MilvusClusterState | ExternalTier | InNodeTier


@dataclass(frozen=True)
class Problem:
    """Something only a spec or cluster change fixes (`Stalled`), e.g. a missing Secret."""

    reason: str
    message: str


@dataclass(frozen=True)
class ObservedCache:
    """Everything the SemanticCache's conditions are computed from, as plain data."""

    exact_tier: TierState
    semantic_tier: TierState
    embedding: TierState
    nodes: WorkloadState
    paused: bool = False
    missing_model_versions: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    hit_rate: float | None = None
    hit_rate_target: float | None = None
    hit_rate_window: str = "15m"


# --- computing conditions -------------------------------------------------------------------


def _tier_condition(
    condition_type: ConditionType, tier: TierState, nodes: WorkloadState
) -> ConditionUpdate:
    if isinstance(tier, WorkloadState):
        if tier.available:
            return ConditionUpdate(condition_type, "True", "ReplicasReady", tier.describe())
        reason = "Progressing" if tier.exists else "NotCreated"
        return ConditionUpdate(condition_type, "False", reason, tier.describe())
    if isinstance(tier, MilvusClusterState):
        if tier.available:
            return ConditionUpdate(condition_type, "True", "Healthy", tier.describe())
        if not tier.installed:
            reason = "MilvusOperatorMissing"
        elif not tier.exists:
            reason = "NotCreated"
        elif tier.status in ("Unhealthy", "Stopped", "Deleting"):
            reason = f"Milvus{tier.status}"
        else:  # Pending, or no status yet
            reason = "Progressing"
        return ConditionUpdate(condition_type, "False", reason, tier.describe())
    if isinstance(tier, ExternalTier):
        detail = f": {tier.detail}" if tier.detail else ""
        if tier.reachable is None and tier.carried is not None:
            carried = tier.carried
            return ConditionUpdate(condition_type, carried.status, carried.reason, carried.message)
        if tier.reachable is None:
            message = f"{tier.what} not checked by a cache node yet"
            return ConditionUpdate(condition_type, "Unknown", "NotYetChecked", message)
        if tier.reachable:
            return ConditionUpdate(
                condition_type, "True", "Reachable", f"{tier.what} is reachable{detail}"
            )
        return ConditionUpdate(
            condition_type, "False", "Unreachable", f"{tier.what} is unreachable{detail}"
        )
    message = f"{tier.what} runs inside each cache node"
    if nodes.available:
        return ConditionUpdate(condition_type, "True", "InNode", message)
    return ConditionUpdate(
        condition_type, "False", "NodesNotReady", f"{message}; {nodes.describe()}"
    )


def _hit_rate_condition(observed: ObservedCache) -> ConditionUpdate:
    kind = ConditionType.HIT_RATE_BELOW_TARGET
    target, rate, window = observed.hit_rate_target, observed.hit_rate, observed.hit_rate_window
    if target is None:
        return ConditionUpdate(kind, "False", "NoTarget", "spec.targets.hitRate is not set")
    if rate is None:
        return ConditionUpdate(kind, "Unknown", "NoTraffic", f"no requests over {window}")
    if rate < target:
        message = f"hit rate {rate:.2f} < target {target:.2f} over {window}"
        return ConditionUpdate(kind, "True", "BelowTarget", message)
    message = f"hit rate {rate:.2f} >= target {target:.2f} over {window}"
    return ConditionUpdate(kind, "False", "TargetMet", message)


def _not_ready_reason(condition: ConditionUpdate) -> str:
    if condition.type == ConditionType.MODEL_VERSIONS_RESOLVED:
        return "ModelVersionsNotResolved"
    return condition.type.removesuffix("Ready") + "NotReady"


def semantic_cache_conditions(observed: ObservedCache) -> list[ConditionUpdate]:
    """Every condition of a SemanticCache from what was observed, `Ready` first."""
    nodes = observed.nodes
    problems = list(observed.problems)
    if observed.missing_model_versions:
        names = ", ".join(observed.missing_model_versions)
        resolved = ConditionUpdate(
            ConditionType.MODEL_VERSIONS_RESOLVED,
            "False",
            "ModelVersionNotFound",
            f"ModelVersion {names} not found",
        )
        problems.insert(0, Problem("ModelVersionNotFound", f"ModelVersion {names} not found"))
    else:
        resolved = ConditionUpdate(
            ConditionType.MODEL_VERSIONS_RESOLVED, "True", "Resolved", "all ModelVersions found"
        )
    dependencies = [
        resolved,
        _tier_condition(ConditionType.EXACT_TIER_READY, observed.exact_tier, nodes),
        _tier_condition(ConditionType.SEMANTIC_TIER_READY, observed.semantic_tier, nodes),
        _tier_condition(ConditionType.EMBEDDING_READY, observed.embedding, nodes),
        ConditionUpdate(
            ConditionType.NODES_READY,
            "True" if nodes.available else "False",
            "ReplicasReady"
            if nodes.available
            else ("Progressing" if nodes.exists else "NotCreated"),
            nodes.describe(),
        ),
    ]

    if problems:
        stalled = ConditionUpdate(
            ConditionType.STALLED,
            "True",
            problems[0].reason,
            "; ".join(problem.message for problem in problems),
        )
    else:
        stalled = ConditionUpdate(ConditionType.STALLED, "False", "NoProblems", "")

    workloads = [
        tier
        for tier in (observed.exact_tier, observed.semantic_tier, observed.embedding, nodes)
        if isinstance(tier, WorkloadState | MilvusClusterState)
    ]
    unsettled = [workload.describe() for workload in workloads if not workload.settled]
    if observed.paused:
        reconciling = ConditionUpdate(
            ConditionType.RECONCILING,
            "False",
            "Paused",
            "spec.paused is true: the operator leaves the children as they are",
        )
    elif problems:
        reconciling = ConditionUpdate(
            ConditionType.RECONCILING, "False", "Stalled", "waiting for the problem to be fixed"
        )
    elif unsettled:
        reconciling = ConditionUpdate(
            ConditionType.RECONCILING, "True", "Progressing", "; ".join(unsettled)
        )
    else:
        reconciling = ConditionUpdate(
            ConditionType.RECONCILING, "False", "Reconciled", "children match the spec"
        )

    failing = [c for c in dependencies if c.status == "False"]
    if not nodes.available:  # in-node tiers are down because the nodes are: name the nodes once
        failing = [c for c in failing if c.reason != "NodesNotReady"]
    unknown = [c for c in dependencies if c.status == "Unknown"]
    if problems:
        ready = ConditionUpdate(ConditionType.READY, "False", stalled.reason, stalled.message)
    elif failing:
        ready = ConditionUpdate(
            ConditionType.READY,
            "False",
            _not_ready_reason(failing[0]),
            "; ".join(c.message for c in failing),
        )
    elif unknown:
        ready = ConditionUpdate(
            ConditionType.READY, "Unknown", "Pending", "; ".join(c.message for c in unknown)
        )
    else:
        ready = ConditionUpdate(
            ConditionType.READY, "True", "Ready", f"{nodes.ready}/{nodes.desired} cache nodes ready"
        )
    return [ready, reconciling, stalled, *dependencies, _hit_rate_condition(observed)]
