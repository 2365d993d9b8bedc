"""Flux (kstatus) and Argo CD health of every documented state, through the real tools.

Flux's health checks (kustomize-controller `wait`/`healthChecks`, helm-controller) read custom
resources with kstatus's `status.Compute`. The `kstatus` fixture runs that Go code, from
sigs.k8s.io/cli-utils and from Flux's fork github.com/fluxcd/cli-utils (they must agree), and
`argocd_health` runs the Argo CD Lua checks. The objects are written by the operator's own
status functions (`observe_cache`, `semantic_cache_status`, `model_version_status`, ...) over
observed states, and:

- the state table of docs/operations.md ("GitOps health") must say what the tools say, for
  every state it lists (`test_the_documented_states_are_what_the_tools_report`);
- over every combination of observed children, tiers, problems, pause and rollover, the
  conditions keep the kstatus conventions and the two tools give the verdicts those rules
  predict (`test_operator_conditions_follow_kstatus`).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitops_health import ROOT, argocd_health, fixture
from kstatus_tool import MODULE_DIR, BuildError, KStatus, Verdict, required

from cachefleet_operator.api.v1alpha1 import Condition, ModelVersion, SemanticCache
from cachefleet_operator.api.v1alpha1.modelversion import ModelVersionStatus
from cachefleet_operator.domain.conditions import (
    ExternalTier,
    InNodeTier,
    ObservedCache,
    Problem,
    TierState,
    WorkloadState,
    merge_conditions,
)
from cachefleet_operator.domain.lifecycle.modelversion import plan_model_version
from cachefleet_operator.domain.lifecycle.rollover import plan_cache
from cachefleet_operator.domain.lifecycle.state import Lifecycle
from cachefleet_operator.domain.naming import Component
from cachefleet_operator.domain.status import (
    TierHealth,
    invalid_model_version_conditions,
    model_version_status,
    observe_cache,
    referenced_secrets,
    secret_problems,
    semantic_cache_status,
)

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NAMESPACE = "team-a"
EXAMPLES = ROOT / "examples"
OPERATIONS = ROOT / "docs" / "operations.md"
KSTATUS_STATUSES = ("Current", "InProgress", "Failed", "Terminating", "Unknown", "NotFound")
ARGO_STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")


# --- objects as the operator writes them -----------------------------------------------------


@cache
def _examples() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                metadata = {**doc["metadata"], "namespace": NAMESPACE, "generation": 1}
                found[doc["kind"], doc["metadata"]["name"]] = {**doc, "metadata": metadata}
    return found


def _example(kind: str, name: str) -> dict[str, Any]:
    """The manifest in examples/, as read back from the API server (namespace, generation)."""
    return copy.deepcopy(_examples()[kind, name])


def _cache(name: str, **spec: Any) -> SemanticCache:
    doc = _example("SemanticCache", name)
    return SemanticCache.model_validate({**doc, "spec": {**doc["spec"], **spec}})


def _model_version(version: str = "1") -> ModelVersion:
    doc = _example("ModelVersion", "gpt-4o-mini")
    return ModelVersion.model_validate({**doc, "spec": {**doc["spec"], "version": version}})


def _stored(
    resource: SemanticCache | ModelVersion, status: Any, *, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The object as a client reads it back: the applied manifest plus the status written."""
    doc = _example(resource.definition.kind, resource.metadata.name)
    doc["spec"] = spec or resource.model_dump(mode="json", by_alias=True, exclude_none=True)["spec"]
    if status is not None:
        doc["status"] = status if isinstance(status, dict) else status.to_api()
    return doc


def _workloads(nodes: str = "settled") -> dict[Component, WorkloadState]:
    """The chat example's children: every one ready, the nodes as asked (`below-min`: the
    Deployment at the API server's default of 1 replica, before the autoscaler's first pass
    brings it to the example's minReplicas of 3)."""
    desired, ready, updated = {
        "settled": (3, 3, 3),
        "rolling": (3, 3, 2),
        "down": (3, 0, 3),
        "below-min": (1, 1, 1),
    }[nodes]
    return {
        Component.REDIS: WorkloadState("StatefulSet", "chat-redis", True, 1, 1, 1),
        Component.MILVUS: WorkloadState("StatefulSet", "chat-milvus", True, 1, 1, 1),
        Component.EMBEDDING: WorkloadState("Deployment", "chat-embedding", True, 2, 2, 2),
        Component.NODE: WorkloadState("Deployment", "chat-node", True, desired, ready, updated),
    }


def _dev_nodes() -> dict[Component, WorkloadState]:
    return {Component.NODE: WorkloadState("Deployment", "dev-node", True, 1, 1, 1)}


def _semantic_cache(
    the_cache: SemanticCache,
    workloads: dict[Component, WorkloadState],
    *,
    health: TierHealth | None = None,
    missing: tuple[str, ...] = (),
    problems: tuple[Problem, ...] = (),
    lifecycle: Lifecycle | None = None,
) -> dict[str, Any]:
    """One reconcile pass's status of `the_cache` over what was observed."""
    observed = observe_cache(
        the_cache,
        workloads,
        health=health or TierHealth(),
        missing_model_versions=missing,
        problems=problems,
    )
    model_versions = [] if missing else [_model_version()]
    status = semantic_cache_status(
        the_cache, model_versions, observed, report=None, now=NOW, lifecycle=lifecycle
    )
    return _stored(the_cache, status)


def _restarted() -> dict[str, Any]:
    """The dev example Ready, then the first pass of a restarted operator (no node asked yet)."""
    dev = _cache("dev")
    up = TierHealth(redis=True, detail="1/1 cache nodes answered", collected=True)
    before = semantic_cache_status(
        dev,
        [_model_version()],
        observe_cache(dev, _dev_nodes(), health=up),
        report=None,
        now=NOW,
    )
    stored = dev.model_copy(update={"status": before})
    after = semantic_cache_status(
        stored,
        [_model_version()],
        observe_cache(stored, _dev_nodes(), health=TierHealth()),
        report=None,
        now=NOW + timedelta(minutes=5),
    )
    assert after.to_api() == before.to_api(), "nothing to write over a restart"
    return _stored(stored, after)


def _rolling_over(the_cache: SemanticCache) -> Lifecycle:
    """The lifecycle right after ModelVersion gpt-4o-mini went from version 1 to 2."""
    v1, v2 = _model_version("1"), _model_version("2")
    embedding = v2.spec.embedding_model
    first = plan_cache(the_cache, [v1], Lifecycle(), embedding_model=embedding, now=NOW)
    plan = plan_cache(the_cache, [v2], first.lifecycle, embedding_model=embedding, now=NOW)
    assert plan.lifecycle.rollovers, "a version change starts a rollover"
    return plan.lifecycle


def _deleting(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["deletionTimestamp"] = "2026-11-20T09:05:00Z"
    obj["metadata"]["finalizers"] = ["cachefleet.io/cleanup"]
    return obj


def _spec_changed(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    return obj


def _model_version_resolved() -> dict[str, Any]:
    mv = _model_version("2024-07-18")
    return _stored(mv, model_version_status(mv, plan_model_version(mv, now=NOW), now=NOW))


def _model_version_invalid() -> dict[str, Any]:
    conditions = merge_conditions(
        [],
        invalid_model_version_conditions("spec.rollover.warmupPrompts: Extra inputs"),
        generation=1,
        now=NOW,
    )
    status = ModelVersionStatus(observed_generation=1, conditions=conditions)
    return _stored(_model_version("2024-07-18"), status)


def _states() -> dict[str, Callable[[], dict[str, Any]]]:
    """Every state docs/operations.md documents, by the name its table uses."""
    chat, dev = _cache("chat"), _cache("dev")
    paused = _cache("chat", paused=True)
    ready = lambda: _semantic_cache(chat, _workloads())  # noqa: E731
    found = {"openai": frozenset({"api-key"}), "chat-tenants": None}
    missing_secret = tuple(secret_problems(referenced_secrets(chat), found))
    return {
        "applied, not seen by the operator yet": lambda: _stored(chat, None),
        "creating": lambda: _semantic_cache(chat, {}),
        "ready": ready,
        "spec changed, not observed yet": lambda: _spec_changed(ready()),
        "node rollout": lambda: _semantic_cache(chat, _workloads("rolling")),
        "nodes not ready": lambda: _semantic_cache(chat, _workloads("down")),
        "autoscaled nodes below minReplicas": lambda: _semantic_cache(
            chat, _workloads("below-min")
        ),
        "rolling over": lambda: _semantic_cache(chat, _workloads(), lifecycle=_rolling_over(chat)),
        "paused, serving": lambda: _semantic_cache(paused, _workloads()),
        "paused, not serving": lambda: _semantic_cache(paused, _workloads("down")),
        "external tier not checked yet": lambda: _semantic_cache(dev, _dev_nodes()),
        "operator restarted, tiers not asked again yet": _restarted,
        "external tier unreachable": lambda: _semantic_cache(
            dev, _dev_nodes(), health=TierHealth(redis=False, detail="connection refused")
        ),
        "stalled: ModelVersion not found": lambda: _semantic_cache(
            chat, _workloads(), missing=("gpt-4o-mini",)
        ),
        "stalled: Secret not found": lambda: _semantic_cache(
            chat, _workloads(), problems=missing_secret
        ),
        "deleting": lambda: _deleting(ready()),
        "ModelVersion resolved": _model_version_resolved,
        "ModelVersion invalid": _model_version_invalid,
        "ModelVersion deleting": lambda: _deleting(_model_version_resolved()),
    }


# --- the table of docs/operations.md ---------------------------------------------------------


_HEADER = "| state | conditions the operator writes | Flux (kstatus) | Argo CD |"


@cache
def _documented() -> dict[str, tuple[str, str, str]]:
    """State → (conditions cell, kstatus status, Argo CD status) from docs/operations.md."""
    lines = OPERATIONS.read_text(encoding="utf-8").splitlines()
    start = lines.index(_HEADER) + 2  # after the |---| line
    rows: dict[str, tuple[str, str, str]] = {}
    for line in itertools.takewhile(lambda text: text.startswith("|"), lines[start:]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 4, line
        name = re.fullmatch(r"\*\*(.+?)\*\*.*", cells[0])
        assert name, f"the state cell starts with **name**: {line}"
        kstatus = re.findall(r"\b(" + "|".join(KSTATUS_STATUSES) + r")\b", cells[2])
        argo = re.findall(r"\b(" + "|".join(ARGO_STATUSES) + r")\b", cells[3])
        assert kstatus, f"no kstatus verdict in {line}"
        assert argo, f"no Argo CD verdict in {line}"
        rows[name.group(1)] = (cells[1], kstatus[0], argo[0])
    return rows


def _conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions", [])}


def test_the_table_lists_every_state() -> None:
    assert list(_documented()) == list(_states())


@pytest.mark.parametrize("state", list(_states()))
def test_the_documented_states_are_what_the_tools_report(kstatus: KStatus, state: str) -> None:
    obj = _states()[state]()
    documented_conditions, documented_kstatus, documented_argo = _documented()[state]
    # Each `Type=Status` the table names is what the operator wrote.
    conditions = _conditions(obj)
    for condition_type, value in re.findall(r"`(\w+)=(True|False|Unknown)", documented_conditions):
        assert conditions.get(condition_type) == value, (condition_type, conditions)
    verdict = kstatus(obj)
    assert verdict.status == documented_kstatus, verdict
    argo = argocd_health(obj["kind"], obj)
    assert argo["status"] == documented_argo, argo


def test_the_matrix(kstatus: KStatus) -> None:
    """Prints the matrix (`pytest -s`); the closing note of the issue quotes it."""
    states = _states()
    verdicts = kstatus.many([build() for build in states.values()])
    width = max(map(len, states))
    for (state, build), verdict in zip(states.items(), verdicts, strict=True):
        obj = build()
        print(f"{state:<{width}}  {verdict.status:<11}  {argocd_health(obj['kind'], obj)}")


# --- every combination of observations -------------------------------------------------------

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
    # a restarted operator's first pass: what was stored stands until the nodes are asked
    "external-carried-up": ExternalTier(
        "external Redis",
        carried=Condition(
            type="ExactTierReady",
            status="True",
            reason="Reachable",
            message="external Redis is reachable: 1/1 cache nodes answered",
            observed_generation=GENERATION,
            last_transition_time=NOW,
        ),
    ),
    "external-carried-down": ExternalTier(
        "external Redis",
        carried=Condition(
            type="ExactTierReady",
            status="False",
            reason="Unreachable",
            message="external Redis is unreachable: 1/1 cache nodes answered: refused",
            observed_generation=GENERATION,
            last_transition_time=NOW,
        ),
    ),
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
# autoscaled, before the autoscaler's first pass: 1 replica ready, minReplicas 3
NODES["below-min"] = WorkloadState("Deployment", "c-node", True, 1, 1, 1, minimum=3)
PROBLEMS = {
    "none": (),
    "secret": (
        Problem("SecretNotFound", "Secret openai (spec.upstream.apiKeySecretRef) not found"),
    ),
}
Case = tuple[str, str, str, str, str, bool, bool, bool]
CASES: list[Case] = list(
    itertools.product(
        EXACT, SEMANTIC, EMBEDDING, NODES, PROBLEMS, [False, True], [False, True], [False, True]
    )
)


def _observed(case: Case) -> ObservedCache:
    exact, semantic, embedding, nodes, problems, paused, missing_mv, _ = case
    return ObservedCache(
        exact_tier=EXACT[exact],
        semantic_tier=SEMANTIC[semantic],
        embedding=EMBEDDING[embedding],
        nodes=NODES[nodes],
        paused=paused,
        problems=PROBLEMS[problems],
        missing_model_versions=("gpt-4o-mini",) if missing_mv else (),
    )


@cache
def _combination_objects() -> list[dict[str, Any]]:
    chat = _cache("chat").model_copy(deep=True)
    chat.metadata.generation = GENERATION
    lifecycles = {False: Lifecycle.of(chat.status), True: _rolling_over(chat)}
    model_versions = [_model_version()]
    spec = chat.model_dump(mode="json", by_alias=True, exclude_none=True)["spec"]
    objects = []
    for case in CASES:
        observed = _observed(case)
        status = semantic_cache_status(
            chat, model_versions, observed, report=None, now=NOW, lifecycle=lifecycles[case[7]]
        )
        obj = _stored(chat, status, spec=copy.deepcopy(spec))
        obj["metadata"]["generation"] = GENERATION
        obj["spec"]["paused"] = observed.paused
        objects.append(obj)
    return objects


def _unsettled(observed: ObservedCache) -> bool:
    tiers = (observed.exact_tier, observed.semantic_tier, observed.embedding, observed.nodes)
    return any(isinstance(t, WorkloadState) and not t.settled for t in tiers)


def test_operator_conditions_follow_kstatus(kstatus: KStatus) -> None:
    objects = _combination_objects()
    verdicts = kstatus.many(objects)
    for case, obj, verdict in zip(CASES, objects, verdicts, strict=True):
        try:
            _check(case, obj, verdict)
        except AssertionError as error:
            raise AssertionError(f"case {'/'.join(map(str, case))}: {error}") from error


def _check(case: Case, obj: dict[str, Any], verdict: Verdict) -> None:
    observed = _observed(case)
    rolling_over = case[7]
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    stuck = bool(observed.problems or observed.missing_model_versions)

    # The three kstatus conditions are always present, for the current generation.
    for name in ("Ready", "Reconciling", "Stalled"):
        assert conditions[name]["observedGeneration"] == GENERATION
    reconciling = conditions["Reconciling"]["status"] == "True"
    stalled = conditions["Stalled"]["status"] == "True"
    ready = conditions["Ready"]["status"]
    # kstatus takes the first of Reconciling=True / Stalled=True: never both.
    assert not (reconciling and stalled)
    # Stalled: only a spec or cluster change helps; Ready is then False for the same reason.
    assert stalled == stuck
    if stalled:
        assert ready == "False"
        assert conditions["Ready"]["reason"] == conditions["Stalled"]["reason"]
    # Reconciling: the operator is converging children or moving a rollover (never while
    # paused or stalled).
    active = not observed.paused and not stuck
    assert reconciling == (active and (_unsettled(observed) or rolling_over))
    if observed.paused:
        assert conditions["Reconciling"]["reason"] == "Paused"
    if reconciling and not _unsettled(observed):
        assert conditions["Reconciling"]["reason"] == "RollingOver"

    # kstatus: Stalled → Failed, Reconciling → InProgress, else Ready decides (True →
    # Current, False or Unknown → InProgress with Ready's message).
    if stalled:
        assert (verdict.status, verdict.message) == ("Failed", conditions["Stalled"]["message"])
    elif reconciling:
        expected = ("InProgress", conditions["Reconciling"]["message"])
        assert (verdict.status, verdict.message) == expected
    elif ready == "True":
        assert verdict == Verdict("Current", "Resource is Ready")
    else:
        assert (verdict.status, verdict.message) == ("InProgress", conditions["Ready"]["message"])
    argo = argocd_health("SemanticCache", obj)["status"]
    assert argo == _argo_for(
        paused=observed.paused, stalled=stalled, reconciling=reconciling, ready=ready
    )


def _argo_for(*, paused: bool, stalled: bool, reconciling: bool, ready: str) -> str:
    """The Argo CD verdict the check's rules give (deploy/argocd/health, first match wins).

    It differs from kstatus by design: kstatus answers "has the controller finished?", the
    Argo CD check "does the cache serve?". So a paused fleet is Suspended (kstatus: from its
    conditions), and a node rollout or a rollover that keeps Ready=True is Healthy (kstatus:
    InProgress); where kstatus falls back to Ready (InProgress), Argo CD says Degraded for
    Ready=False and Progressing for Ready=Unknown.
    """
    if paused:
        return "Suspended"
    if stalled:
        return "Degraded"
    if ready == "True":
        return "Healthy"
    if reconciling:
        return "Progressing"
    return {"False": "Degraded", "Unknown": "Progressing"}[ready]


def test_the_combinations_reach_every_verdict(kstatus: KStatus) -> None:
    objects = _combination_objects()
    seen = {
        (verdict.status, argocd_health("SemanticCache", obj)["status"])
        for obj, verdict in zip(objects, kstatus.many(objects), strict=True)
    }
    assert {k for k, _ in seen} == {"Current", "InProgress", "Failed"}
    assert {a for _, a in seen} == {"Healthy", "Progressing", "Degraded", "Suspended"}


# --- recorded objects ------------------------------------------------------------------------

KSTATUS = {
    "semanticcache-healthy.yaml": "Current",
    "semanticcache-no-status.yaml": "Current",  # not reached by the operator yet
    "semanticcache-progressing-rollout.yaml": "InProgress",
    "semanticcache-progressing-generation.yaml": "InProgress",
    "semanticcache-progressing-pending.yaml": "InProgress",  # Ready=Unknown
    "semanticcache-degraded-not-ready.yaml": "InProgress",  # Ready=False, nothing stalled
    "semanticcache-degraded-stalled.yaml": "Failed",
    "semanticcache-suspended.yaml": "Current",  # paused, Ready=True
    "modelversion-healthy.yaml": "Current",
    "modelversion-no-status.yaml": "Current",
    "modelversion-progressing-generation.yaml": "InProgress",
    "modelversion-degraded.yaml": "Failed",
}


def test_every_fixture_has_a_kstatus_expectation() -> None:
    from gitops_health import FIXTURES

    assert sorted(path.name for path in FIXTURES.glob("*.yaml")) == sorted(KSTATUS)


def test_kstatus_of_recorded_objects(kstatus: KStatus) -> None:
    names = sorted(KSTATUS)
    verdicts = kstatus.many([fixture(name) for name in names])
    assert {name: v.status for name, v in zip(names, verdicts, strict=True)} == KSTATUS


def test_generation_mismatch_message_names_both_generations(kstatus: KStatus) -> None:
    verdict = kstatus(fixture("semanticcache-progressing-generation.yaml"))
    assert verdict == Verdict(
        "InProgress", "SemanticCache generation is 3, but latest observed generation is 2"
    )


def test_ready_false_is_in_progress_with_the_ready_message(kstatus: KStatus) -> None:
    obj = fixture("semanticcache-degraded-not-ready.yaml")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert kstatus(obj) == Verdict("InProgress", ready["message"])


# --- the tool itself -------------------------------------------------------------------------


def _go_mod_pins() -> dict[str, str]:
    text = (MODULE_DIR / "go.mod").read_text(encoding="utf-8")
    return dict(re.findall(r"^\s*(\S+/cli-utils) (v\S+)", text, re.MULTILINE))


def test_the_binary_links_the_pinned_libraries(kstatus: KStatus) -> None:
    pins = _go_mod_pins()
    assert set(pins) == {"sigs.k8s.io/cli-utils", "github.com/fluxcd/cli-utils"}
    assert kstatus.versions() == [
        f"sigs.k8s.io/cli-utils {pins['sigs.k8s.io/cli-utils']}",
        f"github.com/fluxcd/cli-utils {pins['github.com/fluxcd/cli-utils']}",
    ]


def test_without_go_ci_fails_and_a_laptop_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster import gomod

    def no_go() -> str:
        raise FileNotFoundError("the Go toolchain (`go`) is not on PATH; install Go 1.26+")

    monkeypatch.setattr(gomod, "go_binary", no_go)
    with pytest.raises(pytest.fail.Exception, match="not on PATH"):
        required(in_ci=True)
    with pytest.raises(pytest.skip.Exception, match="not on PATH"):
        required(in_ci=False)


def test_a_build_past_its_deadline_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kstatus: KStatus
) -> None:
    from kstatus_tool import build

    monkeypatch.setenv("CACHEFLEET_CACHE_DIR", str(tmp_path))
    with pytest.raises(BuildError, match="deadline"):
        build(deadline_s=0)
    assert not [path for path in tmp_path.rglob("kstatus*") if path.is_file()], "left behind"
