"""Conditions over an operator restart, and Ready only at the declared minimum (issue 16,
point 4), from pure inputs: the stored status of a pass, then the passes of a new process.

Before: the first pass after a start had no node report yet, so an external tier was
`NotYetChecked` and Ready went True → Unknown (`Pending`) → True, with a new `Ready` Event at
every restart; an autoscaled fleet was Ready with 1 node while `minReplicas` was 3.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from operator_testdata import cache, model_version

from cachefleet_contract.admin import Readiness, StatsReport
from cachefleet_operator.adapters.metrics import OperatorMetrics
from cachefleet_operator.adapters.nodes import NodeClient
from cachefleet_operator.api.v1alpha1 import SemanticCache
from cachefleet_operator.api.v1alpha1.semanticcache import SemanticCacheStatus
from cachefleet_operator.domain.conditions import (
    ExternalTier,
    WorkloadState,
    find_condition,
    semantic_cache_conditions,
)
from cachefleet_operator.domain.naming import Component
from cachefleet_operator.domain.status import (
    TierHealth,
    cache_transition_events,
    observe_cache,
    semantic_cache_status,
    status_differs,
)
from cachefleet_operator.services.context import ServiceContext
from cachefleet_operator.services.discovery import NodeDiscovery
from cachefleet_operator.services.nodeaccess import NodeAccess
from cachefleet_operator.services.stats import StatsCollector, StatsTarget
from cachefleet_operator.settings import OperatorConfig

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T1 + timedelta(seconds=2)

UP = TierHealth(redis=True, detail="1/1 cache nodes answered", collected=True)
DOWN = TierHealth(redis=False, detail="1/1 cache nodes answered: refused", collected=True)
NOBODY = TierHealth(None, None, "0/1 cache nodes answered", collected=True)
NOT_COLLECTED = TierHealth()  # a new process: the collector has not asked any node yet


def dev_nodes(ready: int = 1) -> dict[Component, WorkloadState]:
    return {Component.NODE: WorkloadState("Deployment", "dev-node", True, 1, ready, 1)}


def one_pass(
    stored: SemanticCache,
    health: TierHealth,
    now: datetime,
    workloads: dict[Component, WorkloadState] | None = None,
) -> SemanticCacheStatus:
    observed = observe_cache(stored, dev_nodes() if workloads is None else workloads, health=health)
    return semantic_cache_status(stored, [model_version()], observed, report=None, now=now)


def stored_with(the_cache: SemanticCache, status: SemanticCacheStatus) -> SemanticCache:
    return the_cache.model_copy(update={"status": status})


def condition(status: SemanticCacheStatus, condition_type: str) -> tuple[str, str, datetime]:
    found = find_condition(status.conditions, condition_type)
    assert found is not None, condition_type
    return found.status, found.reason, found.last_transition_time


# --- carried over a restart -----------------------------------------------------------------


def test_a_ready_cache_stays_ready_over_a_restart_with_no_write_and_no_event() -> None:
    dev = cache("dev")
    before = one_pass(dev, UP, T0)  # the old process: Ready
    assert condition(before, "Ready") == ("True", "Ready", T0)
    stored = stored_with(dev, before)

    first = one_pass(stored, NOT_COLLECTED, T1)  # the new process's first pass
    assert not status_differs(before, first)  # nothing to write
    assert cache_transition_events(before.conditions, first.conditions) == []
    assert condition(first, "Ready") == ("True", "Ready", T0)
    assert condition(first, "ExactTierReady") == ("True", "Reachable", T0)
    exact = find_condition(first.conditions, "ExactTierReady")
    assert exact is not None
    assert exact.message == "external Redis is reachable: 1/1 cache nodes answered"

    confirmed = one_pass(stored, UP, T2)  # the first collection says the same
    assert not status_differs(before, confirmed)


def test_what_the_first_collection_says_replaces_the_carried_condition() -> None:
    dev = cache("dev")
    before = one_pass(dev, UP, T0)
    stored = stored_with(dev, before)
    down = one_pass(stored, DOWN, T2)
    assert condition(down, "Ready") == ("False", "ExactTierNotReady", T2)
    assert [e.reason for e in cache_transition_events(before.conditions, down.conditions)] == [
        "ExactTierNotReady"
    ]
    # no node answered at all: that is an observation too (Unknown), not a missing one
    unknown = one_pass(stored, NOBODY, T2)
    assert condition(unknown, "Ready") == ("Unknown", "Pending", T2)
    assert condition(unknown, "ExactTierReady") == ("Unknown", "NotYetChecked", T2)


def test_an_unreachable_tier_stays_unreachable_over_a_restart() -> None:
    dev = cache("dev")
    before = one_pass(dev, DOWN, T0)
    assert condition(before, "Ready") == ("False", "ExactTierNotReady", T0)
    after = one_pass(stored_with(dev, before), NOT_COLLECTED, T1)
    assert not status_differs(before, after)
    assert cache_transition_events(before.conditions, after.conditions) == []


def test_nothing_is_carried_for_a_new_generation_or_from_nothing() -> None:
    dev = cache("dev")
    before = one_pass(dev, UP, T0)
    changed = stored_with(dev, before)
    changed.metadata.generation = 2  # the spec changed while no operator ran
    after = one_pass(changed, NOT_COLLECTED, T1)
    assert condition(after, "Ready") == ("Unknown", "Pending", T1)
    # no stored status: not checked yet, as always
    fresh = one_pass(dev, NOT_COLLECTED, T0)
    assert condition(fresh, "ExactTierReady") == ("Unknown", "NotYetChecked", T0)
    # a stored Unknown stays Unknown
    stored = stored_with(dev, fresh)
    assert condition(one_pass(stored, NOT_COLLECTED, T1), "Ready") == ("Unknown", "Pending", T0)


def test_an_external_milvus_is_carried_too() -> None:
    shared = cache("dev", semanticTier={"external": {"uri": "http://milvus:19530"}})
    health = TierHealth(redis=True, milvus=True, detail="1/1 cache nodes answered", collected=True)
    before = one_pass(shared, health, T0)
    assert condition(before, "SemanticTierReady") == ("True", "Reachable", T0)
    after = one_pass(stored_with(shared, before), NOT_COLLECTED, T1)
    assert not status_differs(before, after)


def test_observed_workloads_are_never_carried() -> None:
    """The nodes are read from the API server on every pass: fewer ready is a change."""
    dev = cache("dev")
    before = one_pass(dev, UP, T0)
    after = one_pass(stored_with(dev, before), NOT_COLLECTED, T1, dev_nodes(ready=0))
    assert condition(after, "Ready") == ("False", "NodesNotReady", T1)


def test_the_carried_condition_is_used_as_stored() -> None:
    dev = cache("dev")
    stored = stored_with(dev, one_pass(dev, DOWN, T0))
    tier = observe_cache(stored, dev_nodes(), health=NOT_COLLECTED).exact_tier
    assert isinstance(tier, ExternalTier)
    assert tier.carried is not None
    assert (tier.carried.status, tier.carried.reason) == ("False", "Unreachable")
    assert observe_cache(stored, dev_nodes(), health=NOBODY).exact_tier == ExternalTier(
        "external Redis", None, "0/1 cache nodes answered"
    )


# --- the declared minimum -------------------------------------------------------------------


def chat_workloads(desired: int, ready: int) -> dict[Component, WorkloadState]:
    return {
        Component.REDIS: WorkloadState("StatefulSet", "chat-redis", True, 1, 1, 1),
        Component.MILVUS: WorkloadState("StatefulSet", "chat-milvus", True, 1, 1, 1),
        Component.EMBEDDING: WorkloadState("Deployment", "chat-embedding", True, 2, 2, 2),
        Component.NODE: WorkloadState("Deployment", "chat-node", True, desired, ready, desired),
    }


def chat_conditions(desired: int, ready: int) -> dict[str, tuple[str, str, str]]:
    chat = cache("chat")  # nodes.autoscaling: minReplicas 3
    observed = observe_cache(chat, chat_workloads(desired, ready), health=NOT_COLLECTED)
    return {u.type: (u.status, u.reason, u.message) for u in semantic_cache_conditions(observed)}


def test_an_autoscaled_fleet_below_min_replicas_is_not_ready() -> None:
    # until the autoscaler acts, the Deployment runs the API server's default of 1 replica
    found = chat_conditions(desired=1, ready=1)
    assert found["NodesReady"] == ("False", "Progressing", "Deployment chat-node: 1/1 ready, "
                                   "minimum 3")  # fmt: skip
    assert found["Ready"] == ("False", "NodesNotReady", "Deployment chat-node: 1/1 ready, "
                              "minimum 3")  # fmt: skip
    assert found["Reconciling"][:2] == ("True", "Progressing")
    assert chat_conditions(desired=3, ready=2)["Ready"][:2] == ("False", "NodesNotReady")


def test_an_autoscaled_fleet_at_min_replicas_is_ready_and_a_scale_up_keeps_it_ready() -> None:
    assert chat_conditions(desired=3, ready=3)["Ready"] == ("True", "Ready",
                                                             "3/3 cache nodes ready")  # fmt: skip
    assert chat_conditions(desired=3, ready=3)["Reconciling"][:2] == ("False", "Reconciled")
    scaling = chat_conditions(desired=5, ready=3)
    assert scaling["Ready"] == ("True", "Ready", "3/5 cache nodes ready")
    assert scaling["NodesReady"] == ("True", "ReplicasReady",
                                     "Deployment chat-node: 3/5 ready, minimum 3")  # fmt: skip
    assert scaling["Reconciling"] == ("True", "Progressing",
                                      "Deployment chat-node: 3/5 ready, minimum 3")  # fmt: skip


def test_without_autoscaling_the_deployment_replicas_are_the_minimum() -> None:
    dev = cache("dev", nodes={"replicas": 3})
    nodes = observe_cache(
        dev,
        {Component.NODE: WorkloadState("Deployment", "dev-node", True, 3, 2, 3)},
        health=UP,
    ).nodes
    assert nodes.minimum is None
    assert (nodes.available, nodes.describe()) == (False, "Deployment dev-node: 2/3 ready")


@pytest.mark.parametrize(
    ("state", "available", "settled", "text"),
    [
        (WorkloadState("Deployment", "n", True, 1, 1, 1, minimum=3), False, False,
         "Deployment n: 1/1 ready, minimum 3"),
        (WorkloadState("Deployment", "n", True, 3, 3, 3, minimum=3), True, True,
         "Deployment n: 3/3 ready"),
        (WorkloadState("Deployment", "n", True, 4, 3, 4, minimum=3), True, False,
         "Deployment n: 3/4 ready, minimum 3"),
        (WorkloadState("Deployment", "n", True, 2, 2, 2), True, True, "Deployment n: 2/2 ready"),
        (WorkloadState("Deployment", "n", True, 0, 0, 0), False, False, "Deployment n: 0/0 ready"),
        (WorkloadState("Deployment", "n", False, minimum=3), False, False,
         "Deployment n does not exist yet"),
    ],
)  # fmt: skip
def test_workload_readiness_against_the_declared_minimum(
    state: WorkloadState, available: bool, settled: bool, text: str
) -> None:
    assert (state.available, state.settled, state.describe()) == (available, settled, text)


# --- the collector hands the first collection over ------------------------------------------


class FakeNodes:
    def __init__(self, readiness: Readiness | None) -> None:
        self._readiness = readiness

    async def stats(self, base_url: str, *, api_key: str | None = None) -> StatsReport:
        raise OSError("no stats in this test")

    async def readiness(self, base_url: str) -> Readiness:
        if self._readiness is None:
            raise OSError("connection refused")
        return self._readiness


def collector(readiness: Readiness | None, changes: list[tuple[str, str]]) -> StatsCollector:
    discovery = NodeDiscovery(cast(Any, None), from_annotation=True)
    context = ServiceContext(
        kube=cast(Any, None),  # the collector calls nodes only
        nodes=cast(NodeClient, FakeNodes(readiness)),
        access=NodeAccess(cast(Any, None), discovery),
        events=cast(Any, None),
        metrics=OperatorMetrics(),
        config=OperatorConfig(),
    )
    return StatsCollector(
        context,
        discovery=discovery,
        on_change=lambda namespace, name: changes.append((namespace, name)),
    )


def target(*, external_redis: bool, endpoints: str | None = "http://127.0.0.1:1") -> StatsTarget:
    return StatsTarget(
        namespace="inference",
        name="dev",
        node_service="dev-node",
        endpoints_annotation=endpoints,
        cache_namespaces=("gpt-4o-mini-a1a7439fc3",),
        external_redis=external_redis,
        external_milvus=False,
    )


async def test_the_first_collection_after_a_start_always_reaches_the_reconcile() -> None:
    key = ("inference", "dev")
    # no node answers: nothing known, but the carried-over conditions must give way
    changes: list[tuple[str, str]] = []
    stats = collector(None, changes)
    stats.track(target(external_redis=True), nodes_available=True)
    assert stats.health(key) == TierHealth()
    await stats.collect(key)
    assert stats.health(key).collected
    assert stats.health(key).redis is None
    assert changes == [key]
    await stats.collect(key)  # nothing new after that
    assert changes == [key]
    # no endpoint at all is an observation as well
    changes.clear()
    stats = collector(None, changes)
    stats.track(target(external_redis=True, endpoints=None), nodes_available=True)
    await stats.collect(key)
    assert stats.health(key) == TierHealth(None, None, "no cache node endpoint", collected=True)
    assert changes == [key]
    # a fleet without external tiers has nothing carried: no extra pass
    changes.clear()
    stats = collector(None, changes)
    stats.track(target(external_redis=False), nodes_available=True)
    await stats.collect(key)
    assert changes == []
