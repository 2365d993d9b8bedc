"""Condition transitions (API conventions) and conditions computed from observed children."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from cachefleet_operator.api.v1alpha1 import Condition, ConditionStatus
from cachefleet_operator.domain.conditions import (
    ConditionType,
    ConditionUpdate,
    ExternalTier,
    InNodeTier,
    ObservedCache,
    Problem,
    WorkloadState,
    find_condition,
    merge_conditions,
    semantic_cache_conditions,
    workload_state,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)


def ready(status: ConditionStatus, reason: str, message: str = "") -> ConditionUpdate:
    return ConditionUpdate("Ready", status, reason, message)


def only(conditions: list[Condition], condition_type: str) -> Condition:
    found = find_condition(conditions, condition_type)
    assert found is not None, condition_type
    return found


# --- merge_conditions -----------------------------------------------------------------------


def test_a_new_condition_gets_the_current_time_without_microseconds() -> None:
    now = T0.replace(microsecond=123456)
    [condition] = merge_conditions([], [ready("Unknown", "Pending")], generation=1, now=now)
    assert condition.last_transition_time == T0
    assert condition.observed_generation == 1
    assert condition.message == ""


def test_transition_time_changes_only_when_status_flips() -> None:
    first = merge_conditions([], [ready("False", "NodesNotReady", "0/2")], generation=1, now=T0)
    same = merge_conditions(
        first, [ready("False", "ExactTierNotReady", "1/2")], generation=2, now=T1
    )
    condition = only(same, "Ready")
    assert condition.last_transition_time == T0  # status stayed False
    assert (condition.reason, condition.message) == ("ExactTierNotReady", "1/2")
    assert condition.observed_generation == 2  # always refreshed
    flipped = merge_conditions(same, [ready("True", "Ready", "2/2")], generation=2, now=T2)
    assert only(flipped, "Ready").last_transition_time == T2


def test_unchanged_updates_are_a_fixed_point() -> None:
    updates = [ready("True", "Ready", "2/2 cache nodes ready")]
    first = merge_conditions([], updates, generation=3, now=T0)
    assert merge_conditions(first, updates, generation=3, now=T2) == first


def test_conditions_of_other_writers_are_kept_and_order_is_stable() -> None:
    foreign = Condition(
        type="example.com/Audited", status="True", reason="Checked", last_transition_time=T0
    )
    merged = merge_conditions(
        [foreign],
        [
            ConditionUpdate("NodesReady", "True", "ReplicasReady"),
            ConditionUpdate("Stalled", "False", "NoProblems"),
            ready("True", "Ready"),
        ],
        generation=1,
        now=T1,
    )
    assert [c.type for c in merged] == ["Ready", "Stalled", "NodesReady", "example.com/Audited"]
    assert merged[-1] == foreign


def test_times_are_stored_in_utc() -> None:
    local = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    [condition] = merge_conditions([], [ready("True", "Ready")], generation=1, now=local)
    assert condition.last_transition_time == T0
    assert condition.to_api()["lastTransitionTime"] == "2026-03-01T12:00:00Z"


# --- observations ---------------------------------------------------------------------------


def test_workload_state_reads_api_objects() -> None:
    statefulset = {
        "metadata": {"generation": 4},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 4, "readyReplicas": 1, "updatedReplicas": 1},
    }
    state = workload_state("StatefulSet", "chat-redis", statefulset)
    assert state.available
    assert state.settled
    assert state.describe() == "StatefulSet chat-redis: 1/1 ready"
    stale = workload_state(
        "StatefulSet", "chat-redis", {**statefulset, "metadata": {"generation": 5}}
    )
    assert stale.available
    assert not stale.settled
    fresh = workload_state("Deployment", "chat-node", {"spec": {"replicas": 2}, "metadata": {}})
    assert (fresh.ready, fresh.available) == (0, False)
    missing = workload_state("Deployment", "chat-node", None)
    assert not missing.exists
    assert "does not exist yet" in missing.describe()


def workload(
    name: str, *, desired: int = 1, ready: int = 1, updated: int | None = None
) -> WorkloadState:
    kind = "StatefulSet" if name.endswith(("redis", "milvus")) else "Deployment"
    return WorkloadState(
        kind=kind,
        name=name,
        exists=True,
        desired=desired,
        ready=ready,
        updated=desired if updated is None else updated,
    )


def all_ready(**changes: object) -> ObservedCache:
    base = {
        "exact_tier": workload("chat-redis"),
        "semantic_tier": workload("chat-milvus"),
        "embedding": workload("chat-embedding", desired=2, ready=2),
        "nodes": workload("chat-node", desired=3, ready=3),
    }
    return ObservedCache(**{**base, **changes})


def by_type(observed: ObservedCache) -> dict[str, ConditionUpdate]:
    return {c.type: c for c in semantic_cache_conditions(observed)}


def test_every_condition_type_is_reported() -> None:
    # RollingOver comes from the lifecycle (domain.lifecycle), not from the observed children.
    lifecycle = {ConditionType.ROLLING_OVER.value}
    assert set(by_type(all_ready())) == {c.value for c in ConditionType} - lifecycle


def test_all_children_ready_means_ready_and_reconciled() -> None:
    conditions = by_type(all_ready())
    assert conditions["Ready"] == ConditionUpdate("Ready", "True", "Ready", "3/3 cache nodes ready")
    assert conditions["Reconciling"].status == "False"
    assert conditions["Stalled"].status == "False"
    for kind in ("ExactTierReady", "SemanticTierReady", "EmbeddingReady", "NodesReady"):
        assert conditions[kind].status == "True", kind
    assert conditions["ModelVersionsResolved"].status == "True"


def test_first_visit_is_not_ready_and_reconciling() -> None:
    nothing = {
        name: WorkloadState(kind="Deployment", name=name, exists=False)
        for name in ("exact_tier", "semantic_tier", "embedding", "nodes")
    }
    conditions = by_type(ObservedCache(**nothing))
    assert conditions["Ready"].status == "False"
    assert conditions["Ready"].reason == "ExactTierNotReady"
    assert conditions["Reconciling"].status == "True"
    assert conditions["NodesReady"].reason == "NotCreated"


def test_a_rolling_update_keeps_ready_but_reconciles() -> None:
    rolling = all_ready(nodes=workload("chat-node", desired=3, ready=3, updated=1))
    conditions = by_type(rolling)
    assert conditions["Ready"].status == "True"
    assert conditions["Reconciling"] == ConditionUpdate(
        "Reconciling", "True", "Progressing", "Deployment chat-node: 3/3 ready"
    )


def test_a_missing_model_version_stalls() -> None:
    conditions = by_type(all_ready(missing_model_versions=("gpt-5",)))
    assert conditions["Stalled"] == ConditionUpdate(
        "Stalled", "True", "ModelVersionNotFound", "ModelVersion gpt-5 not found"
    )
    assert conditions["ModelVersionsResolved"].status == "False"
    assert conditions["Ready"].status == "False"
    assert conditions["Ready"].reason == "ModelVersionNotFound"
    assert conditions["Reconciling"].reason == "Stalled"


def test_problems_are_listed_in_stalled() -> None:
    problems = (
        Problem("SecretNotFound", "Secret openai not found"),
        Problem("EmbeddingModelConflict", "two embedding models"),
    )
    conditions = by_type(all_ready(problems=problems))
    assert conditions["Stalled"].reason == "SecretNotFound"
    assert conditions["Stalled"].message == "Secret openai not found; two embedding models"
    assert conditions["Ready"].reason == "SecretNotFound"


def test_paused_says_so_in_reconciling() -> None:
    conditions = by_type(all_ready(paused=True, nodes=workload("chat-node", desired=2, ready=1)))
    assert conditions["Reconciling"].status == "False"
    assert conditions["Reconciling"].reason == "Paused"
    assert conditions["Ready"].status == "False"  # still the truth about the children


def test_external_tiers_follow_what_the_nodes_report() -> None:
    unknown = by_type(all_ready(exact_tier=ExternalTier("Redis")))
    assert unknown["ExactTierReady"].status == "Unknown"
    assert unknown["Ready"] == ConditionUpdate(
        "Ready", "Unknown", "Pending", "Redis not checked by a cache node yet"
    )
    down = by_type(all_ready(exact_tier=ExternalTier("Redis", reachable=False, detail="timeout")))
    assert down["ExactTierReady"].message == "Redis is unreachable: timeout"
    assert down["Ready"].status == "False"
    assert down["Ready"].reason == "ExactTierNotReady"
    up = by_type(all_ready(semantic_tier=ExternalTier("Milvus", reachable=True)))
    assert up["SemanticTierReady"].status == "True"
    assert up["Ready"].status == "True"


def test_in_node_tiers_follow_the_nodes() -> None:
    local = all_ready(embedding=InNodeTier("the local embedder"))
    assert by_type(local)["EmbeddingReady"] == ConditionUpdate(
        "EmbeddingReady", "True", "InNode", "the local embedder runs inside each cache node"
    )
    down = by_type(
        all_ready(
            semantic_tier=InNodeTier("Milvus Lite"),
            nodes=workload("chat-node", desired=2, ready=0),
        )
    )
    assert down["SemanticTierReady"].status == "False"
    assert down["SemanticTierReady"].reason == "NodesNotReady"
    # Ready names the cause (the nodes), not every tier that runs inside them.
    assert down["Ready"].reason == "NodesNotReady"
    assert down["Ready"].message == "Deployment chat-node: 0/2 ready"


def test_hit_rate_against_the_target() -> None:
    assert by_type(all_ready())["HitRateBelowTarget"].reason == "NoTarget"
    quiet = by_type(all_ready(hit_rate_target=0.6))["HitRateBelowTarget"]
    assert (quiet.status, quiet.reason) == ("Unknown", "NoTraffic")
    below = by_type(all_ready(hit_rate=0.42, hit_rate_target=0.6))["HitRateBelowTarget"]
    assert below == ConditionUpdate(
        "HitRateBelowTarget", "True", "BelowTarget", "hit rate 0.42 < target 0.60 over 15m"
    )
    met = by_type(all_ready(hit_rate=0.7, hit_rate_target=0.6))
    assert met["HitRateBelowTarget"].status == "False"
    assert by_type(all_ready(hit_rate=0.1, hit_rate_target=0.6))["Ready"].status == "True"


def test_a_lifecycle_only_moves_transition_times_on_flips() -> None:
    """Create → nodes come up → rolling update → a Secret disappears → fixed."""
    start = {
        "exact_tier": workload("chat-redis", ready=0),
        "semantic_tier": InNodeTier("Milvus Lite"),
        "embedding": InNodeTier("the local embedder"),
        "nodes": workload("chat-node", desired=2, ready=0),
    }
    steps = [
        ObservedCache(**start),
        ObservedCache(**{**start, "exact_tier": workload("chat-redis")}),
        all_ready(semantic_tier=InNodeTier("Milvus Lite"), embedding=InNodeTier("x")),
        all_ready(
            semantic_tier=InNodeTier("Milvus Lite"),
            embedding=InNodeTier("x"),
            nodes=workload("chat-node", desired=3, ready=3, updated=1),
        ),
        all_ready(problems=(Problem("SecretNotFound", "Secret openai not found"),)),
        all_ready(),
    ]
    conditions: list[Condition] = []
    history = []
    for minute, observed in enumerate(steps):
        now = T0 + timedelta(minutes=minute)
        conditions = merge_conditions(
            conditions, semantic_cache_conditions(observed), generation=1, now=now
        )
        history.append({c.type: (c.status, c.last_transition_time) for c in conditions})
    ready_history = [entry["Ready"] for entry in history]
    assert [status for status, _ in ready_history] == [
        "False",
        "False",
        "True",
        "True",
        "False",
        "True",
    ]
    assert [when.minute for _, when in ready_history] == [0, 0, 2, 2, 4, 5]
    reconciling = [entry["Reconciling"] for entry in history]
    assert [status for status, _ in reconciling] == [
        "True",
        "True",
        "False",
        "True",
        "False",
        "False",
    ]
    assert [when.minute for _, when in reconciling] == [0, 0, 2, 3, 4, 4]
