"""Status assembly, status diffing, transition Events, dependencies and node endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from operator_testdata import cache, model_version

from cachefleet_contract.admin import Readiness
from cachefleet_operator.api.v1alpha1.semanticcache import HitRate
from cachefleet_operator.domain.conditions import (
    ConditionUpdate,
    ExternalTier,
    InNodeTier,
    Problem,
    WorkloadState,
    find_condition,
    merge_conditions,
)
from cachefleet_operator.domain.endpoints import annotation_endpoints, endpoint_slice_urls
from cachefleet_operator.domain.hitrate import HitRateReport
from cachefleet_operator.domain.lifecycle.modelversion import plan_model_version
from cachefleet_operator.domain.naming import Component
from cachefleet_operator.domain.status import (
    EventSpec,
    SecretRef,
    TierHealth,
    cache_transition_events,
    expected_workloads,
    invalid_model_version_conditions,
    model_summary,
    model_version_conditions,
    model_version_status,
    observe_cache,
    referenced_secrets,
    secret_problems,
    semantic_cache_status,
    status_differs,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def ready_workloads(chat_nodes: int = 3) -> dict[Component, WorkloadState]:
    return {
        Component.REDIS: WorkloadState("StatefulSet", "chat-redis", True, 1, 1, 1),
        Component.MILVUS: WorkloadState("StatefulSet", "chat-milvus", True, 1, 1, 1),
        Component.EMBEDDING: WorkloadState("Deployment", "chat-embedding", True, 2, 2, 2),
        Component.NODE: WorkloadState("Deployment", "chat-node", True, 3, chat_nodes, 3),
    }


# --- dependencies ---------------------------------------------------------------------------


def test_secrets_the_gpu_example_names() -> None:
    refs = referenced_secrets(cache("chat"))
    assert refs == [
        SecretRef("openai", "api-key", "spec.upstream.apiKeySecretRef"),
        SecretRef("chat-tenants", "search", "spec.auth.apiKeysSecretRef"),
        SecretRef("chat-tenants", "support", "spec.auth.apiKeysSecretRef"),
        SecretRef("chat-tenants", "platform", "spec.auth.apiKeysSecretRef"),
    ]
    assert referenced_secrets(cache("dev")) == [
        SecretRef("dev-redis", "url", "spec.exactTier.external.urlSecretRef")
    ]


def test_missing_secrets_and_keys_are_problems_once_per_secret() -> None:
    refs = referenced_secrets(cache("chat"))
    problems = secret_problems(
        refs, {"openai": None, "chat-tenants": frozenset({"search", "support"})}
    )
    assert problems == [
        Problem("SecretNotFound", "Secret openai (spec.upstream.apiKeySecretRef) not found"),
        Problem(
            "SecretKeyNotFound",
            "Secret chat-tenants has no key platform (spec.auth.apiKeysSecretRef)",
        ),
    ]
    assert secret_problems(refs, {"openai": frozenset({"api-key"}), "chat-tenants": frozenset(
        {"search", "support", "platform"}
    )}) == []  # fmt: skip


def test_expected_workloads_follow_the_spec() -> None:
    assert [(w.kind, w.name) for w in expected_workloads(cache("chat"))] == [
        ("StatefulSet", "chat-redis"),
        ("StatefulSet", "chat-milvus"),
        ("Deployment", "chat-embedding"),
        ("Deployment", "chat-node"),
    ]
    assert [(w.kind, w.name) for w in expected_workloads(cache("dev"))] == [
        ("Deployment", "dev-node")
    ]


def test_observation_maps_tiers_to_workloads_external_or_in_node() -> None:
    chat = observe_cache(cache("chat"), ready_workloads(), health=TierHealth())
    assert chat.exact_tier == ready_workloads()[Component.REDIS]
    assert chat.hit_rate_target == 0.4
    dev = observe_cache(
        cache("dev"),
        {Component.NODE: WorkloadState("Deployment", "dev-node", True, 1, 1, 1)},
        health=TierHealth(redis=False, detail="1/1 cache nodes answered"),
    )
    assert dev.exact_tier == ExternalTier("external Redis", False, "1/1 cache nodes answered")
    assert dev.semantic_tier == InNodeTier("Milvus Lite (embedded)")
    assert dev.embedding == InNodeTier("the local embedder")
    missing = observe_cache(cache("dev"), {}, health=TierHealth())
    assert missing.nodes == WorkloadState("Deployment", "dev-node", exists=False)


# --- status ---------------------------------------------------------------------------------


def test_first_status_is_not_ready_with_model_namespaces_and_ready_nodes() -> None:
    chat = cache("chat")
    mv = model_version()
    status = semantic_cache_status(
        chat, [mv], observe_cache(chat, {}, health=TierHealth()), report=None, now=T0
    )
    assert status.observed_generation == 1
    ready = find_condition(status.conditions, "Ready")
    assert ready is not None
    assert ready.status == "False"
    assert status.model == "gpt-4o-mini@2024-07-18"
    assert [(a.model_version, a.cache_namespace) for a in status.active_namespaces] == [
        ("gpt-4o-mini", "gpt-4o-mini-a1a7439fc3")
    ]
    assert status.ready_nodes == 0
    assert status.hit_rate is None


def test_a_second_pass_with_nothing_new_does_not_differ() -> None:
    chat = cache("chat")
    observed = observe_cache(chat, ready_workloads(), health=TierHealth())
    first = semantic_cache_status(chat, [model_version()], observed, report=None, now=T0)
    stored = chat.model_copy(update={"status": first})
    second = semantic_cache_status(stored, [model_version()], observed, report=None, now=T1)
    assert not status_differs(first, second)
    fewer = observe_cache(chat, ready_workloads(chat_nodes=2), health=TierHealth())
    third = semantic_cache_status(stored, [model_version()], fewer, report=None, now=T1)
    assert status_differs(first, third)
    ready = find_condition(third.conditions, "Ready")
    assert ready is not None
    assert ready.last_transition_time == T1


def test_hit_rates_are_kept_until_a_report_is_published() -> None:
    chat = cache("chat")
    kept = HitRate(overall="0.55", exact="0.50", semantic="0.05", window="15m", observed_at=T0)
    stored = chat.model_copy(
        update={"status": chat.status.model_copy(update={"hit_rate": kept, "entries": 7})}
    )
    observed = observe_cache(stored, ready_workloads(), health=TierHealth())
    status = semantic_cache_status(stored, [model_version()], observed, report=None, now=T1)
    assert (status.hit_rate, status.entries) == (kept, 7)
    report = HitRateReport(
        observed_at=T1,
        window="15m",
        overall="0.30",
        exact="0.20",
        semantic="0.10",
        rate=0.3,
        entries=9,
        tokens_saved=120,
        dollars_saved="0.42",
    )
    observed = observe_cache(stored, ready_workloads(), health=TierHealth(), hit_rate=0.3)
    status = semantic_cache_status(stored, [model_version()], observed, report=report, now=T1)
    assert status.hit_rate is not None
    assert status.hit_rate.overall == "0.30"
    assert status.entries == 9
    assert status.savings is not None
    assert status.savings.dollars == "0.42"
    below = find_condition(status.conditions, "HitRateBelowTarget")
    assert below is not None
    assert below.message == "hit rate 0.30 < target 0.40 over 15m"


def test_the_stored_hit_rate_verdict_survives_an_operator_restart() -> None:
    chat = cache("chat")
    verdict = merge_conditions(
        [],
        [ConditionUpdate("HitRateBelowTarget", "True", "BelowTarget", "hit rate 0.10 < ...")],
        generation=1,
        now=T0,
    )
    stored = chat.model_copy(
        update={"status": chat.status.model_copy(update={"conditions": verdict})}
    )
    observed = observe_cache(stored, ready_workloads(), health=TierHealth())
    status = semantic_cache_status(stored, [model_version()], observed, report=None, now=T1)
    kept = find_condition(status.conditions, "HitRateBelowTarget")
    assert kept == verdict[0]


def test_model_summary_is_bounded() -> None:
    many = [model_version(f"mv-{i}", model="m" * 200) for i in range(8)]
    summary = model_summary(many)
    assert summary is not None
    assert len(summary) == 1024
    assert summary.endswith("...")
    assert model_summary([]) is None


# --- events ---------------------------------------------------------------------------------


def conditions(*updates: ConditionUpdate, now: datetime = T0) -> list:  # type: ignore[type-arg]
    return merge_conditions([], list(updates), generation=1, now=now)


def test_events_only_for_flips() -> None:
    not_ready = conditions(
        ConditionUpdate("Ready", "False", "NodesNotReady", "0/2"),
        ConditionUpdate("Stalled", "False", "NoProblems"),
    )
    ready = conditions(
        ConditionUpdate("Ready", "True", "Ready", "2/2 cache nodes ready"),
        ConditionUpdate("Stalled", "False", "NoProblems"),
    )
    assert cache_transition_events([], not_ready) == []
    assert cache_transition_events(not_ready, not_ready) == []
    assert cache_transition_events(not_ready, ready) == [
        EventSpec("Normal", "Ready", "2/2 cache nodes ready")
    ]
    assert cache_transition_events(ready, not_ready) == [
        EventSpec("Warning", "NodesNotReady", "0/2")
    ]


def test_events_for_stalls_pauses_and_hit_rate() -> None:
    stalled = conditions(
        ConditionUpdate("Stalled", "True", "SecretNotFound", "Secret x not found"),
        ConditionUpdate("Reconciling", "False", "Stalled"),
    )
    paused = conditions(
        ConditionUpdate("Stalled", "False", "NoProblems"),
        ConditionUpdate("Reconciling", "False", "Paused", "spec.paused is true"),
        ConditionUpdate("HitRateBelowTarget", "True", "BelowTarget", "hit rate 0.10 < 0.40"),
    )
    assert cache_transition_events([], stalled) == [
        EventSpec("Warning", "SecretNotFound", "Secret x not found")
    ]
    assert cache_transition_events(stalled, paused) == [
        EventSpec("Normal", "Unstalled", "the problem is resolved; reconciling"),
        EventSpec("Normal", "Paused", "spec.paused is true"),
        EventSpec("Warning", "HitRateBelowTarget", "hit rate 0.10 < 0.40"),
    ]


def test_an_invalid_model_version_is_stalled_until_its_spec_is_fixed() -> None:
    conditions = {c.type: (c.status, c.reason) for c in invalid_model_version_conditions("bad")}
    assert conditions == {
        "Ready": ("False", "InvalidSpec"),
        "Resolved": ("False", "InvalidSpec"),
        "Stalled": ("True", "InvalidSpec"),
    }
    mv = model_version()  # fixed: the same condition types flip back
    fixed = {c.type: c.status for c in model_version_conditions(mv.metadata.name)}
    assert fixed == {"Ready": "True", "Resolved": "True", "Stalled": "False"}


def test_model_version_status_names_the_namespace() -> None:
    mv = model_version()
    status = model_version_status(mv, plan_model_version(mv, now=T0), now=T0)
    assert status.cache_namespace == "gpt-4o-mini-a1a7439fc3"
    assert status.identity is not None
    assert status.identity.version == mv.spec.version
    assert status.observed_generation == 1
    assert {c.type: c.status for c in status.conditions} == {
        "Ready": "True",
        "Resolved": "True",
        "Stalled": "False",
    }
    stored = mv.model_copy(update={"status": status})
    again = model_version_status(stored, plan_model_version(stored, now=T1), now=T1)
    assert not status_differs(status, again)


# --- node endpoints -------------------------------------------------------------------------


def test_endpoint_slices_give_ready_endpoints_on_the_http_port() -> None:
    slices = [
        {
            "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.1.0.4"], "conditions": {"ready": True}},
                {"addresses": ["10.1.0.5"], "conditions": {"ready": False}},
                {"addresses": ["10.1.0.6"]},
            ],
        },
        {"addressType": "IPv6", "ports": [{"name": "http", "port": 8080}],
         "endpoints": [{"addresses": ["fd00::7"], "conditions": {"ready": True}}]},
        {"addressType": "FQDN", "ports": [{"name": "http", "port": 80}],
         "endpoints": [{"addresses": ["example.org"]}]},
    ]  # fmt: skip
    assert endpoint_slice_urls(slices) == [
        "http://10.1.0.4:8080",
        "http://10.1.0.6:8080",
        "http://[fd00::7]:8080",
    ]
    assert endpoint_slice_urls([{"addressType": "IPv4", "ports": None, "endpoints": None}]) == []


def test_the_endpoints_annotation() -> None:
    assert annotation_endpoints(" http://127.0.0.1:1234/, http://127.0.0.1:1235 ,") == [
        "http://127.0.0.1:1234",
        "http://127.0.0.1:1235",
    ]
    assert annotation_endpoints(None) == []
    with pytest.raises(ValueError, match="not an http"):
        annotation_endpoints("127.0.0.1:1234")


def test_external_tier_health_from_the_nodes_readiness() -> None:
    from cachefleet_operator.services.stats import tier_health

    up = Readiness.model_validate(
        {
            "status": "ready",
            "tiers": {
                "store": {"kind": "redis", "breaker_open": False},
                "milvus": {"connected": True},
                "coherence": True,
            },
        }
    )
    cut_off = Readiness.model_validate(
        {
            "status": "ready",
            "tiers": {
                "store": {"kind": "redis", "breaker_open": False},
                "milvus": {"connected": False},
                "coherence": False,
            },
        }
    )
    starting = Readiness(status="starting")
    assert tier_health([up, cut_off], redis=True, milvus=True) == TierHealth(
        True, True, "2/2 cache nodes answered", collected=True
    )
    assert tier_health([cut_off, starting, None], redis=True, milvus=True) == TierHealth(
        False, False, "1/3 cache nodes answered", collected=True
    )
    assert tier_health([starting], redis=True, milvus=False) == TierHealth(
        None, None, "0/1 cache nodes answered", collected=True
    )
    no_bus = Readiness.model_validate(
        {
            "status": "ready",
            "tiers": {
                "store": {"kind": "redis", "breaker_open": True},
                "milvus": {"connected": False},
                "coherence": None,
            },
        }
    )
    assert tier_health([no_bus], redis=True, milvus=False).redis is False
