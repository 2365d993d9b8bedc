"""Flux/kstatus compatibility: the conditions the operator writes follow the kstatus rules.

kstatus (sigs.k8s.io/cli-utils, used by Flux's health checks) reads a custom resource from
`status.observedGeneration` and the abnormal-true conditions `Reconciling` and `Stalled` only;
`gitops_health.kstatus` transcribes its rules. The operator's conditions are computed by
`cachefleet_operator.domain.conditions` over a matrix of observed states, and every result must
(1) keep Reconciling and Stalled consistent with what the operator is doing, and (2) give the
same verdict in kstatus as in the Argo CD health check, except where the two tools mean
different things (listed in `_argo_for`).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from gitops_health import argocd_health, fixture, kstatus

from cachefleet_operator.domain.conditions import (
    ExternalTier,
    InNodeTier,
    ObservedCache,
    Problem,
    TierState,
    WorkloadState,
    merge_conditions,
    semantic_cache_conditions,
)

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
GENERATION = 7


def _workload(kind: str, name: str, state: str, desired: int = 2) -> WorkloadState:
    ready, updated, exists = {
        "settled": (desired, desired, True),
        "rolling": (desired, desired - 1, True),  # available, not every replica updated yet
        "down": (0, desired, True),
        "missing": (0, 0, False),
    }[state]
    return WorkloadState(kind, name, exists=exists, desired=desired, ready=ready, updated=updated)


EXACT: dict[str, TierState] = {
    "redis-settled": _workload("StatefulSet", "c-redis", "settled", 1),
    "redis-down": _workload("StatefulSet", "c-redis", "down", 1),
    "redis-missing": _workload("StatefulSet", "c-redis", "missing", 1),
    "external-unchecked": ExternalTier("external Redis"),
    "external-up": ExternalTier("external Redis", reachable=True),
    "external-down": ExternalTier("external Redis", reachable=False, detail="refused"),
}
SEMANTIC: dict[str, TierState] = {
    "milvus-settled": _workload("StatefulSet", "c-milvus", "settled", 1),
    "milvus-down": _workload("StatefulSet", "c-milvus", "down", 1),
    "embedded": InNodeTier("Milvus Lite (embedded)"),
}
EMBEDDING: dict[str, TierState] = {
    "gpu-settled": _workload("Deployment", "c-embedding", "settled"),
    "gpu-rolling": _workload("Deployment", "c-embedding", "rolling"),
    "local": InNodeTier("the local embedder"),
}
NODES = {
    state: _workload("Deployment", "c-node", state, 3)
    for state in ("settled", "rolling", "down", "missing")
}
PROBLEMS = {
    "none": (),
    "secret": (
        Problem("SecretNotFound", "Secret openai (spec.upstream.apiKeySecretRef) not found"),
    ),
}
CASES = list(
    itertools.product(EXACT, SEMANTIC, EMBEDDING, NODES, PROBLEMS, [False, True], [False, True])
)


def _observed(case: tuple[str, str, str, str, str, bool, bool]) -> ObservedCache:
    exact, semantic, embedding, nodes, problems, paused, missing_mv = case
    return ObservedCache(
        exact_tier=EXACT[exact],
        semantic_tier=SEMANTIC[semantic],
        embedding=EMBEDDING[embedding],
        nodes=NODES[nodes],
        paused=paused,
        problems=PROBLEMS[problems],
        missing_model_versions=("gpt-4o-mini",) if missing_mv else (),
    )


def _object(observed: ObservedCache) -> dict[str, Any]:
    """A SemanticCache as stored after one pass over `observed` (status from the operator)."""
    conditions = merge_conditions(
        [], semantic_cache_conditions(observed), generation=GENERATION, now=NOW
    )
    return {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "SemanticCache",
        "metadata": {"name": "c", "namespace": "team-a", "generation": GENERATION},
        "spec": {"paused": observed.paused},
        "status": {
            "observedGeneration": GENERATION,
            "conditions": [condition.to_api() for condition in conditions],
        },
    }


def _by_type(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {condition["type"]: condition for condition in obj["status"]["conditions"]}


def _unsettled(observed: ObservedCache) -> bool:
    tiers = (observed.exact_tier, observed.semantic_tier, observed.embedding, observed.nodes)
    return any(isinstance(t, WorkloadState) and not t.settled for t in tiers)


def test_operator_conditions_follow_kstatus() -> None:
    for case in CASES:
        try:
            _check(case)
        except AssertionError as error:
            raise AssertionError(f"case {'/'.join(map(str, case))}: {error}") from error


def _check(case: tuple[str, str, str, str, str, bool, bool]) -> None:
    observed = _observed(case)
    obj = _object(observed)
    conditions = _by_type(obj)
    stuck = bool(observed.problems or observed.missing_model_versions)

    # The three kstatus-relevant conditions are always present, for the current generation.
    for name in ("Ready", "Reconciling", "Stalled"):
        assert conditions[name]["observedGeneration"] == GENERATION
    reconciling = conditions["Reconciling"]["status"] == "True"
    stalled = conditions["Stalled"]["status"] == "True"
    assert not (reconciling and stalled)
    # Stalled: only a spec or cluster change helps; Ready is then False for the same reason.
    assert stalled == stuck
    if stalled:
        assert conditions["Ready"]["status"] == "False"
        assert conditions["Ready"]["reason"] == conditions["Stalled"]["reason"]
    # Reconciling: the operator is still converging children (never while paused or stalled).
    assert reconciling == (not observed.paused and not stuck and _unsettled(observed))
    if observed.paused:
        assert conditions["Reconciling"]["reason"] == "Paused"

    status, _ = kstatus(obj)
    assert status == ("Failed" if stalled else "InProgress" if reconciling else "Current")
    argo = argocd_health("SemanticCache", obj)["status"]
    assert argo == _argo_for(status, conditions["Ready"]["status"], paused=observed.paused)


def _argo_for(kstatus_status: str, ready: str, *, paused: bool) -> str:
    """The Argo CD verdict that goes with a kstatus verdict.

    Where they differ, it is by design: kstatus answers "has the controller finished?", the
    Argo CD check "does the cache serve?". So a paused fleet is Suspended (kstatus: Current or
    Failed); a rollout that keeps Ready=True is Healthy (kstatus: InProgress); a reconciled
    fleet whose external tier is unreachable is Degraded, and one not yet probed Progressing
    (kstatus: Current, because it does not read Ready).
    """
    if paused:
        return "Suspended"
    if kstatus_status == "Failed":
        return "Degraded"
    if ready == "True":
        return "Healthy"
    if kstatus_status == "InProgress":
        return "Progressing"
    return {"False": "Degraded", "Unknown": "Progressing"}[ready]


def test_the_matrix_reaches_every_verdict() -> None:
    seen = {
        (kstatus(obj)[0], argocd_health("SemanticCache", obj)["status"])
        for obj in (_object(_observed(case)) for case in CASES)
    }
    assert {k for k, _ in seen} == {"Current", "InProgress", "Failed"}
    assert {a for _, a in seen} == {"Healthy", "Progressing", "Degraded", "Suspended"}


# --- recorded objects ----------------------------------------------------------------------

KSTATUS = {
    "semanticcache-healthy.yaml": "Current",
    "semanticcache-progressing-rollout.yaml": "InProgress",
    "semanticcache-progressing-generation.yaml": "InProgress",
    "semanticcache-degraded-stalled.yaml": "Failed",
    "semanticcache-suspended.yaml": "Current",
    "modelversion-healthy.yaml": "Current",
    "modelversion-progressing-generation.yaml": "InProgress",
}


@pytest.mark.parametrize("name", sorted(KSTATUS))
def test_kstatus_of_recorded_objects(name: str) -> None:
    assert kstatus(fixture(name))[0] == KSTATUS[name]


def test_generation_mismatch_message_names_both_generations() -> None:
    status, message = kstatus(fixture("semanticcache-progressing-generation.yaml"))
    assert status == "InProgress"
    assert message == "SemanticCache generation is 3, but latest observed generation is 2"


def test_kstatus_cannot_tell_an_object_the_operator_has_not_reached() -> None:
    """kstatus skips the generation check when there is no observedGeneration, so a
    SemanticCache the operator has not written yet is Current to Flux; the Argo CD check
    says Progressing. (The operator writes status within one pass of the object.)"""
    obj = fixture("semanticcache-no-status.yaml")
    assert kstatus(obj)[0] == "Current"
    assert argocd_health("SemanticCache", obj)["status"] == "Progressing"


def test_deletion_is_terminating() -> None:
    obj = fixture("semanticcache-healthy.yaml")
    obj["metadata"]["deletionTimestamp"] = "2026-11-20T10:00:00Z"
    assert kstatus(obj)[0] == "Terminating"


def test_invalid_model_version_is_failed_for_kstatus() -> None:
    assert kstatus(fixture("modelversion-degraded.yaml"))[0] == "Failed"
