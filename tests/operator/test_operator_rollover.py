"""The model-version lifecycle state machine (domain/lifecycle/), pure: every transition,
bounds, rollback, embedding migration, and the RollingOver condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from operator_testdata import cache, model_version

from cachefleet_contract.admin import ReembedResult, WarmResult
from cachefleet_operator.api.v1alpha1 import ModelVersion, SemanticCache
from cachefleet_operator.api.v1alpha1.semanticcache import Reembedding, SemanticCacheStatus
from cachefleet_operator.domain.conditions import find_condition, merge_conditions
from cachefleet_operator.domain.lifecycle.embedding import (
    embedding_migration_refused,
    embedding_switched,
    prepared,
    reembed_request,
    reembedded,
)
from cachefleet_operator.domain.lifecycle.modelversion import (
    Identity,
    Transition,
    decide_namespace,
    plan_model_version,
)
from cachefleet_operator.domain.lifecycle.purge import due_purges, purged
from cachefleet_operator.domain.lifecycle.rollover import (
    namespace_mismatches,
    plan_cache,
    switched,
    unswitched_nodes,
)
from cachefleet_operator.domain.lifecycle.state import Lifecycle, rolling_over_condition
from cachefleet_operator.domain.lifecycle.warmup import warm_request, warmed
from cachefleet_operator.domain.naming import cache_namespace

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
OTHER = "cachefleet-test/minilm-copy"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def mv(version: str = "2024-07-18", **spec: Any) -> ModelVersion:
    return model_version(version=version, **spec)


def ns(model: ModelVersion) -> str:
    return cache_namespace(model.metadata.name, model.spec)


def dev(**spec: Any) -> SemanticCache:
    return cache("dev", **spec)


def start(the_cache: SemanticCache, models: list[ModelVersion]) -> Lifecycle:
    """A fresh cache's first plan: nothing to roll over."""
    plan = plan_cache(the_cache, models, Lifecycle(), embedding_model=MINILM, now=T0)
    assert plan.lifecycle.rollovers == ()
    return plan.lifecycle


def switch_all(lifecycle: Lifecycle, models: list[ModelVersion], now: datetime) -> Lifecycle:
    for record in lifecycle.switching:
        plan, _ = switched(lifecycle, record.model_version, model_versions=models, nodes=2, now=now)
        lifecycle = plan.lifecycle
    return lifecycle


# --- decide_namespace -----------------------------------------------------------------------


def decide(model: ModelVersion, current: ModelVersion | None, policy: str = "Rollover", **kw: Any):
    return decide_namespace(
        model.metadata.name,
        model.spec,
        current=ns(current) if current else None,
        current_identity=Identity.of(current.spec) if current else None,
        policy=policy,
        **kw,
    )


def test_the_identity_decides_the_namespace() -> None:
    v1, v2 = mv("1"), mv("2")
    assert decide(v1, None) == decide(v1, None)
    assert decide(v1, None).transition == Transition.NEW
    assert decide(v1, v1).transition == Transition.UNCHANGED
    changed = decide(v2, v1)
    assert (changed.transition, changed.namespace, changed.trigger) == (
        Transition.ROLLOVER,
        ns(v2),
        "VersionChanged",
    )
    template = decide(mv("1", promptTemplateHash="abc"), v1)
    assert template.trigger == "PromptTemplateChanged"
    epoch = decide(mv("1", invalidation={"epoch": 1}), v1)
    assert (epoch.transition, epoch.trigger) == (Transition.ROLLOVER, "EpochBumped")


def test_an_embedding_model_change_keeps_the_namespace() -> None:
    v1 = mv("1")
    new_embedding = mv("1", embeddingModel=OTHER)
    assert decide(new_embedding, v1).transition == Transition.UNCHANGED


def test_keep_keeps_the_namespace_except_on_an_epoch_bump() -> None:
    v1 = mv("1")
    kept = decide(mv("2"), v1, policy="Keep")
    assert (kept.transition, kept.namespace) == (Transition.KEEP, ns(v1))
    bumped = decide(mv("1", invalidation={"epoch": 1}), v1, policy="Keep")
    assert bumped.transition == Transition.ROLLOVER


def test_a_retained_identity_is_a_rollback() -> None:
    v1, v2 = mv("1"), mv("2")
    back = decide(v1, v2, retained=[(ns(v1), Identity.of(v1.spec))])
    assert (back.transition, back.namespace) == (Transition.ROLLBACK, ns(v1))
    by_name = decide(v1, v2, retained=[(ns(v1), None)])
    assert by_name.transition == Transition.ROLLBACK
    fresh = decide(v1, None, retained=[(ns(v1), Identity.of(v1.spec))])
    assert (fresh.transition, fresh.namespace) == (Transition.NEW, ns(v1))


def test_a_status_without_identity_adopts_its_namespace() -> None:
    v1 = mv("1")
    legacy = decide_namespace(
        "gpt-4o-mini", v1.spec, current=ns(v1), current_identity=None, policy="Rollover"
    )
    assert legacy.transition == Transition.UNCHANGED


# --- ModelVersion ---------------------------------------------------------------------------


def with_status(model: ModelVersion, plan_now: datetime = T0) -> ModelVersion:
    plan = plan_model_version(model, now=plan_now)
    status = model.status.model_copy(
        update={
            "cache_namespace": plan.cache_namespace,
            "identity": plan.identity,
            "previous_namespaces": plan.previous,
        }
    )
    return model.model_copy(update={"status": status})


def edit(model: ModelVersion, **spec: Any) -> ModelVersion:
    doc = model.to_api()
    doc["spec"].update(spec)
    return ModelVersion.model_validate(doc)


def test_model_version_rollover_retains_and_bounds_previous_namespaces() -> None:
    v1 = with_status(mv("1", rollover={"retainFor": "1h", "retainPrevious": 2}))
    plan = plan_model_version(edit(v1, version="2"), now=at(10))
    assert plan.transition == Transition.ROLLOVER
    assert plan.event is not None
    assert plan.event.reason == "CacheNamespaceChanged"
    assert [p.cache_namespace for p in plan.previous] == [ns(v1)]
    assert plan.previous[0].purge_after == at(3610)
    assert plan.next_due == at(3610)
    v2 = with_status(edit(v1, version="2"), at(10))
    v3 = with_status(edit(v2, version="3"), at(20))
    v4 = with_status(edit(v3, version="4"), at(30))
    assert [p.version for p in v4.status.previous_namespaces] == ["3", "2"]  # oldest dropped
    # after retainFor the entries go
    later = plan_model_version(v4, now=at(3700))
    assert later.previous == []


def test_model_version_flush_keeps_nothing_and_keep_keeps_the_namespace() -> None:
    flush = with_status(mv("1", policy="Flush"))
    assert plan_model_version(edit(flush, version="2"), now=T0).previous == []
    keep = with_status(mv("1", policy="Keep"))
    plan = plan_model_version(edit(keep, version="2"), now=T0)
    assert (plan.transition, plan.cache_namespace) == (Transition.KEEP, ns(keep))
    assert plan.identity.version == "2"
    assert plan.event is not None
    assert plan.event.reason == "CacheNamespaceKept"


def test_model_version_rollback_reactivates_a_retained_namespace() -> None:
    v1 = with_status(mv("1"))
    v2 = with_status(edit(v1, version="2"), at(5))
    plan = plan_model_version(edit(v2, version="1"), now=at(10))
    assert (plan.transition, plan.cache_namespace) == (Transition.ROLLBACK, ns(v1))
    assert [p.cache_namespace for p in plan.previous] == [ns(mv("2"))]
    assert plan.event is not None
    assert plan.event.reason == "RolledBack"


# --- the fleet: rollover, flush, keep, rollback ---------------------------------------------


def test_a_new_cache_serves_each_model_version_at_once() -> None:
    v1 = mv("1")
    lifecycle = start(dev(), [v1])
    assert lifecycle.served_namespaces() == {"gpt-4o-mini": ns(v1)}
    assert lifecycle.active[0].version == "1"
    assert lifecycle.embedding is not None
    assert lifecycle.embedding.model == MINILM
    condition = rolling_over_condition(lifecycle, None)
    assert (condition.status, condition.reason) == ("False", "Idle")


def test_rollover_switches_then_retains_then_purges() -> None:
    v1, v2 = mv("1", rollover={"retainFor": "5s"}), mv("2", rollover={"retainFor": "5s"})
    lifecycle = start(dev(), [v1])
    plan = plan_cache(dev(), [v2], lifecycle, embedding_model=MINILM, now=at(1))
    [record] = plan.lifecycle.rollovers
    assert (record.phase, record.from_namespace, record.to_namespace) == (
        "Switching",
        ns(v1),
        ns(v2),
    )
    assert [e.reason for e in plan.events] == ["RolloverStarted"]
    # Before the switch is verified the fleet still serves the old namespace.
    assert plan.lifecycle.served_namespaces() == {"gpt-4o-mini": ns(v1)}
    condition = rolling_over_condition(plan.lifecycle, None)
    assert (condition.status, condition.reason) == ("True", "Switching")
    # The same plan again changes nothing (idempotent).
    again = plan_cache(dev(), [v2], plan.lifecycle, embedding_model=MINILM, now=at(1.5))
    assert again.lifecycle == plan.lifecycle
    assert again.events == []

    done, outcome = switched(plan.lifecycle, "gpt-4o-mini", model_versions=[v2], nodes=2, now=at(2))
    assert (outcome.policy, outcome.seconds) == ("Rollover", 1.0)
    assert done.lifecycle.served_namespaces() == {"gpt-4o-mini": ns(v2)}
    assert done.lifecycle.rollovers == ()  # no warm-up configured
    [retained] = done.lifecycle.retained
    assert (retained.cache_namespace, retained.version, retained.purge_after) == (
        ns(v1),
        "1",
        at(7),
    )
    assert [e.reason for e in done.events] == ["NamespaceSwitched"]
    assert due_purges(done.lifecycle, at(6)) == []
    assert [e.cache_namespace for e in due_purges(done.lifecycle, at(7))] == [ns(v1)]
    assert purged(done.lifecycle, ns(v1)).retained == ()
    condition = rolling_over_condition(
        done.lifecycle, find_condition(conditions("True"), "RollingOver")
    )
    assert (condition.status, condition.reason) == ("False", "Completed")


def conditions(status: str) -> list:
    from cachefleet_operator.domain.conditions import ConditionUpdate

    return merge_conditions(
        [], [ConditionUpdate("RollingOver", status, "Switching", "")], generation=1, now=T0
    )


def test_flush_purges_the_old_namespace_at_once() -> None:
    v1, v2 = mv("1", policy="Flush"), mv("2", policy="Flush")
    lifecycle = plan_cache(dev(), [v2], start(dev(), [v1]), embedding_model=MINILM, now=at(1))
    done = switch_all(lifecycle.lifecycle, [v2], at(2))
    assert [e.cache_namespace for e in due_purges(done, at(2))] == [ns(v1)]


def test_keep_changes_no_namespace_and_the_cache_policy_overrides() -> None:
    v1, v2 = mv("1", policy="Keep"), mv("2", policy="Keep")
    plan = plan_cache(dev(), [v2], start(dev(), [v1]), embedding_model=MINILM, now=at(1))
    assert plan.lifecycle.rollovers == ()
    assert plan.lifecycle.served_namespaces() == {"gpt-4o-mini": ns(v1)}
    assert plan.lifecycle.active[0].version == "2"  # MODEL shows the new version
    assert [e.reason for e in plan.events] == ["CacheNamespaceKept"]
    # The ModelVersion says Rollover, this cache says Keep.
    kept = dev(modelVersions=[{"name": "gpt-4o-mini", "policy": "Keep"}])
    plan = plan_cache(kept, [mv("2")], start(kept, [mv("1")]), embedding_model=MINILM, now=T0)
    assert plan.lifecycle.rollovers == ()
    # ...and the other way round.
    rolled = dev(modelVersions=[{"name": "gpt-4o-mini", "policy": "Flush"}])
    plan = plan_cache(rolled, [v2], start(rolled, [v1]), embedding_model=MINILM, now=T0)
    assert [r.policy for r in plan.lifecycle.rollovers] == ["Flush"]


def test_keep_with_an_epoch_bump_rolls_over_with_retention() -> None:
    v1 = mv("1", policy="Keep")
    bumped = mv("1", policy="Keep", invalidation={"epoch": 1})
    plan = plan_cache(dev(), [bumped], start(dev(), [v1]), embedding_model=MINILM, now=at(1))
    [record] = plan.lifecycle.rollovers
    assert (record.trigger, record.policy) == ("EpochBumped", "Keep")
    done = switch_all(plan.lifecycle, [bumped], at(2))
    assert done.retained[0].purge_after == at(2) + timedelta(hours=24)


def test_rollback_within_retention_reactivates_without_warm_or_purge() -> None:
    warm = {"warm": {"topN": 10, "ratePerSecond": 5}}
    v1, v2 = mv("1", rollover=warm), mv("2", rollover=warm)
    lifecycle = start(dev(), [v1])
    lifecycle = plan_cache(dev(), [v2], lifecycle, embedding_model=MINILM, now=at(1)).lifecycle
    lifecycle = switch_all(lifecycle, [v2], at(2))
    assert lifecycle.rollovers[0].phase == "Warming"
    back = plan_cache(dev(), [v1], lifecycle, embedding_model=MINILM, now=at(3))
    assert "WarmupAbandoned" in [e.reason for e in back.events]
    [record] = back.lifecycle.rollovers
    assert (record.rollback, record.to_namespace, record.phase) == (True, ns(v1), "Switching")
    # The rollback target is still retained (and protected) until every node switched.
    assert ns(v1) in [e.cache_namespace for e in back.lifecycle.retained]
    assert ns(v1) not in [e.cache_namespace for e in due_purges(back.lifecycle, at(10**6))]
    plan, _ = switched(back.lifecycle, "gpt-4o-mini", model_versions=[v1], nodes=2, now=at(4))
    assert plan.lifecycle.rollovers == ()  # no warm-up on a rollback
    assert plan.lifecycle.served_namespaces() == {"gpt-4o-mini": ns(v1)}
    assert [e.cache_namespace for e in plan.lifecycle.retained] == [ns(v2)]
    assert [e.reason for e in plan.events] == ["RolledBack"]


def test_a_rollback_after_the_purge_is_a_new_empty_namespace() -> None:
    v1, v2 = mv("1"), mv("2")
    lifecycle = switch_all(
        plan_cache(dev(), [v2], start(dev(), [v1]), embedding_model=MINILM, now=at(1)).lifecycle,
        [v2],
        at(2),
    )
    lifecycle = purged(lifecycle, ns(v1))
    [record] = plan_cache(
        dev(), [v1], lifecycle, embedding_model=MINILM, now=at(3)
    ).lifecycle.rollovers
    assert (record.rollback, record.to_namespace) == (False, ns(v1))


def test_a_flush_never_shortens_the_retention_of_a_rollback_target() -> None:
    settings = {"retainFor": "24h", "retainPrevious": 1}
    v1, v2, v3 = (mv(v, rollover=settings) for v in ("1", "2", "3"))
    lifecycle = start(dev(), [v1])
    lifecycle = plan_cache(dev(), [v2], lifecycle, embedding_model=MINILM, now=at(1)).lifecycle
    lifecycle = switch_all(lifecycle, [v2], at(2))  # v1's namespace retained for 24 h
    # This cache overrides the ModelVersion's Rollover with Flush for the next change.
    flushing = dev(modelVersions=[{"name": "gpt-4o-mini", "policy": "Flush"}])
    lifecycle = plan_cache(flushing, [v3], lifecycle, embedding_model=MINILM, now=at(3)).lifecycle
    lifecycle = switch_all(lifecycle, [v3], at(4))
    retention = {e.cache_namespace: e.purge_after for e in lifecycle.retained}
    assert retention == {ns(v1): at(2) + timedelta(hours=24), ns(v2): at(4)}
    assert [e.cache_namespace for e in due_purges(lifecycle, at(4))] == [ns(v2)]
    lifecycle = purged(lifecycle, ns(v2))
    # A day later minus a second, rolling back to v1 still finds its answers.
    back = plan_cache(flushing, [v1], lifecycle, embedding_model=MINILM, now=at(86_400))
    [record] = back.lifecycle.rollovers
    assert (record.rollback, record.to_namespace) == (True, ns(v1))


def test_a_switch_into_a_namespace_due_for_purging_waits_for_the_purge() -> None:
    v1, v2 = mv("1", policy="Flush"), mv("2", policy="Flush")
    lifecycle = switch_all(
        plan_cache(dev(), [v2], start(dev(), [v1]), embedding_model=MINILM, now=at(1)).lifecycle,
        [v2],
        at(2),
    )
    # v1's answers were flushed but are not purged yet (say a node did not answer).
    back = plan_cache(dev(), [v1], lifecycle, embedding_model=MINILM, now=at(3)).lifecycle
    [record] = back.rollovers
    assert (record.rollback, record.to_namespace) == (False, ns(v1))  # no rollback to a flush
    assert back.awaiting_purge == (record,)
    assert [e.cache_namespace for e in due_purges(back, at(3))] == [ns(v1)]
    assert purged(back, ns(v1)).awaiting_purge == ()  # then the switch goes on


def test_a_change_during_the_switch_supersedes_it() -> None:
    v1, v2, v3 = mv("1"), mv("2"), mv("3")
    lifecycle = plan_cache(
        dev(), [v2], start(dev(), [v1]), embedding_model=MINILM, now=at(1)
    ).lifecycle
    plan = plan_cache(dev(), [v3], lifecycle, embedding_model=MINILM, now=at(2))
    assert [e.reason for e in plan.events] == ["RolloverCancelled", "RolloverStarted"]
    [record] = plan.lifecycle.rollovers
    assert (record.from_namespace, record.to_namespace) == (ns(v1), ns(v3))
    # Entries a node may have written into the abandoned target are purged (never active).
    assert [(e.cache_namespace, e.purge_after) for e in plan.lifecycle.retained] == [
        (ns(v2), at(2))
    ]
    # Reverting before the switch completes cancels it and serves the old namespace.
    reverted = plan_cache(dev(), [v1], plan.lifecycle, embedding_model=MINILM, now=at(3))
    assert reverted.lifecycle.rollovers == ()
    assert reverted.lifecycle.served_namespaces() == {"gpt-4o-mini": ns(v1)}


def test_retain_previous_bounds_the_retained_namespaces_oldest_first() -> None:
    settings = {"retainFor": "1h", "retainPrevious": 1}
    models = [mv(str(i), rollover=settings) for i in range(4)]
    lifecycle = start(dev(), [models[0]])
    for i, model in enumerate(models[1:], start=1):
        lifecycle = plan_cache(
            dev(), [model], lifecycle, embedding_model=MINILM, now=at(i)
        ).lifecycle
        lifecycle = switch_all(lifecycle, [model], at(i))
    due = [e.cache_namespace for e in due_purges(lifecycle, at(3))]
    assert due == [ns(models[0]), ns(models[1])]  # oldest first; the newest one is kept
    kept = [e for e in lifecycle.retained if e.cache_namespace == ns(models[2])]
    assert kept[0].purge_after == at(3) + timedelta(hours=1)
    none = [mv(str(i), rollover={"retainPrevious": 0}) for i in range(2)]
    lifecycle = plan_cache(
        dev(), [none[1]], start(dev(), [none[0]]), embedding_model=MINILM, now=T0
    ).lifecycle
    lifecycle = switch_all(lifecycle, [none[1]], at(1))
    assert [e.cache_namespace for e in due_purges(lifecycle, at(1))] == [ns(none[0])]


def test_pointing_the_cache_at_another_model_version_switches_the_running_name() -> None:
    a, b = model_version("mv-a"), model_version("mv-b", version="2025-01-31")
    lifecycle = start(dev(modelVersions=[{"name": "mv-a"}]), [a, b])
    pointed = dev(modelVersions=[{"name": "mv-b"}])
    plan = plan_cache(pointed, [a, b], lifecycle, embedding_model=MINILM, now=at(1))
    [record] = plan.lifecycle.rollovers
    assert (
        record.trigger,
        record.from_model_version,
        record.from_namespace,
        record.to_namespace,
    ) == (
        "ModelVersionChanged",
        "mv-a",
        ns(a),
        ns(b),
    )
    # The nodes still run the old config: the switch goes to the name they know.
    report = {"http://n1": {"mv-a": ns(b)}, "http://n2": {"mv-a": ns(a)}}
    assert unswitched_nodes(record, report) == ["http://n2"]
    assert unswitched_nodes(record, {"http://n3": {"mv-b": ns(b)}}) == []
    plan, _ = switched(plan.lifecycle, "mv-b", model_versions=[a, b], nodes=2, now=at(2))
    assert plan.lifecycle.served_namespaces() == {"mv-b": ns(b)}
    assert [e.cache_namespace for e in plan.lifecycle.retained] == [ns(a)]
    # Pointing back within retention is a rollback.
    back = plan_cache(
        dev(modelVersions=[{"name": "mv-a"}]),
        [a, b],
        plan.lifecycle,
        embedding_model=MINILM,
        now=at(3),
    )
    [record] = back.lifecycle.rollovers
    assert (record.rollback, record.from_model_version, record.to_namespace) == (
        True,
        "mv-b",
        ns(a),
    )


def test_adding_and_removing_model_versions() -> None:
    a, b = model_version("mv-a"), model_version("mv-b", version="9", requestModels=["claude"])
    lifecycle = start(dev(modelVersions=[{"name": "mv-a"}]), [a, b])
    both = dev(modelVersions=[{"name": "mv-a"}, {"name": "mv-b"}])
    plan = plan_cache(both, [a, b], lifecycle, embedding_model=MINILM, now=at(1))
    assert plan.lifecycle.rollovers == ()  # a new name: no node serves it yet
    assert plan.lifecycle.served_namespaces() == {"mv-a": ns(a), "mv-b": ns(b)}
    only_b = dev(modelVersions=[{"name": "mv-b"}])
    plan = plan_cache(only_b, [a, b], plan.lifecycle, embedding_model=MINILM, now=at(2))
    assert plan.lifecycle.served_namespaces() == {"mv-b": ns(b)}
    assert [(e.cache_namespace, e.model_version) for e in plan.lifecycle.retained] == [
        (ns(a), "mv-a")
    ]
    assert [e.reason for e in plan.events] == ["NamespaceRetired"]


# --- warm-up --------------------------------------------------------------------------------


def test_warm_up_replays_in_batches_until_the_top_n() -> None:
    warm = {"warm": {"topN": 25, "ratePerSecond": 5}}
    v1, v2 = mv("1", rollover=warm), mv("2", rollover=warm)
    lifecycle = plan_cache(
        dev(), [v2], start(dev(), [v1]), embedding_model=MINILM, now=at(1)
    ).lifecycle
    lifecycle = switch_all(lifecycle, [v2], at(2))
    settings = v2.spec.rollover.warm
    assert settings is not None
    record = lifecycle.rollovers[0]
    request = warm_request(record, settings)
    assert request is not None
    assert (request.name, request.from_namespace, request.offset, request.limit) == (
        "gpt-4o-mini",
        ns(v1),
        0,
        15,  # 3 s at 5/s
    )
    # The warm-up source is never purged while it is read.
    assert ns(v1) not in [e.cache_namespace for e in due_purges(lifecycle, at(10**6))]
    result = WarmResult(
        processed=15, stored=14, skipped=1, failed=0, next_offset=15, total=40, done=False
    )
    plan = warmed(lifecycle, "gpt-4o-mini", result, settings=settings, now=at(5))
    record = plan.lifecycle.rollovers[0]
    assert record.warm is not None
    assert (record.warm.total, record.warm.processed, record.warm.stored) == (25, 15, 14)
    request = warm_request(record, settings)
    assert request is not None
    assert (request.offset, request.limit) == (15, 10)
    result = WarmResult(
        processed=10, stored=10, skipped=0, failed=0, next_offset=25, total=40, done=False
    )
    plan = warmed(plan.lifecycle, "gpt-4o-mini", result, settings=settings, now=at(8))
    assert plan.lifecycle.rollovers == ()
    assert [e.reason for e in plan.events] == ["WarmupCompleted"]
    assert "25/25 prompts replayed (24 stored" in plan.events[0].message


def test_flush_and_rollback_never_warm() -> None:
    warm = {"warm": {"topN": 5}}
    v1, v2 = mv("1", policy="Flush", rollover=warm), mv("2", policy="Flush", rollover=warm)
    lifecycle = plan_cache(
        dev(), [v2], start(dev(), [v1]), embedding_model=MINILM, now=T0
    ).lifecycle
    assert switch_all(lifecycle, [v2], at(1)).rollovers == ()


# --- embedding migration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "refused"),
    [
        ({}, False),  # dev: Milvus Lite in the nodes, in-node embedding: nothing restarts
        ({"embedding": {"mode": "gpu", "gpu": {"replicas": 1}}}, True),
        (
            {
                "semanticTier": {"external": {"uri": "http://milvus:19530"}},
                "embedding": {"mode": "gpu", "gpu": {"replicas": 1}},
            },
            False,
        ),
    ],
)
def test_a_migration_that_would_lose_embedded_vectors_is_refused(
    spec: dict[str, Any], refused: bool
) -> None:
    the_cache = dev(**spec)
    lifecycle = start(the_cache, [mv("1")])
    other = mv("1", embeddingModel=OTHER)
    plan = plan_cache(the_cache, [other], lifecycle, embedding_model=OTHER, now=at(1))
    reason = embedding_migration_refused(the_cache, plan.lifecycle, OTHER)
    if not refused:
        assert reason is None
        assert [e.reason for e in plan.events] == ["EmbeddingMigrationStarted"]
        return
    assert plan.events == []
    assert plan.lifecycle.embedding is not None
    assert plan.lifecycle.embedding.migration is None
    assert plan.lifecycle.embedding.model == MINILM  # the fleet keeps serving it
    assert reason is not None
    for words in ("semanticTier.embedded", "rollout", "semanticTier.managed", "mode local", MINILM):
        assert words in reason
    # Back to the current model: nothing to refuse.
    assert embedding_migration_refused(the_cache, plan.lifecycle, MINILM) is None


def test_an_embedding_change_migrates_preparing_reembedding_switching() -> None:
    v1 = mv("1", rollover={"retainFor": "1h"})
    lifecycle = start(dev(), [v1])
    v2 = mv("2", rollover={"retainFor": "1h"})
    lifecycle = switch_all(
        plan_cache(dev(), [v2], lifecycle, embedding_model=MINILM, now=at(1)).lifecycle, [v2], at(1)
    )
    other = mv("2", embeddingModel=OTHER, rollover={"retainFor": "1h"})
    plan = plan_cache(dev(), [other], lifecycle, embedding_model=OTHER, now=at(2))
    assert plan.lifecycle.rollovers == ()  # the namespace stays
    assert [e.reason for e in plan.events] == ["EmbeddingMigrationStarted"]
    migration = plan.lifecycle.embedding.migration
    assert (migration.phase, migration.from_model, migration.to_model) == (
        "Preparing",
        MINILM,
        OTHER,
    )
    assert rolling_over_condition(plan.lifecycle, None).reason == "Preparing"
    lifecycle = prepared(
        plan.lifecycle, from_space="minilm_384_a", to_space="copy_384_b", now=at(3)
    ).lifecycle
    migration = lifecycle.embedding.migration
    assert migration.phase == "Reembedding"
    assert [c.cache_namespace for c in migration.namespaces] == [ns(v2), ns(v1)]  # active first
    settings = Reembedding(ratePerSecond=100, batchSize=500)
    request = reembed_request(lifecycle, settings)
    assert (request.namespace, request.cursor, request.limit) == (ns(v2), "", 200)
    step = reembedded(
        lifecycle,
        request,
        ReembedResult(processed=200, next_cursor="c1", total=300, done=False),
        began=at(3),
        now=at(5),
    )
    # The same answer again (a retried pass) does not count twice.
    assert (
        reembedded(
            step.lifecycle,
            request,
            ReembedResult(processed=200, next_cursor="c1", total=300, done=False),
            began=at(3),
            now=at(5),
        ).lifecycle
        == step.lifecycle
    )
    migration = step.lifecycle.embedding.migration
    assert (migration.processed, migration.total, migration.rate) == (200, 300, "100.0")
    assert migration.eta == "1s"
    assert (
        "200/300 entries (67%), 100.0/s, ETA 1s"
        in rolling_over_condition(step.lifecycle, None).message
    )
    request = reembed_request(step.lifecycle, settings)
    assert (request.namespace, request.cursor) == (ns(v2), "c1")
    step = reembedded(
        step.lifecycle,
        request,
        ReembedResult(processed=100, next_cursor="", total=300, done=True),
        began=at(5),
        now=at(6),
    )
    request = reembed_request(step.lifecycle, settings)
    assert (request.namespace, request.cursor) == (ns(v1), "")
    step = reembedded(
        step.lifecycle,
        request,
        ReembedResult(processed=0, next_cursor="", total=0, done=True),
        began=at(6),
        now=at(6),
    )
    assert step.lifecycle.embedding.migration.phase == "Switching"
    assert [e.reason for e in step.events] == ["Reembedded"]
    assert rolling_over_condition(step.lifecycle, None).reason == "Switching"
    done = embedding_switched(step.lifecycle, nodes=2, now=at(7))
    assert done.lifecycle.embedding.model == OTHER
    assert done.lifecycle.embedding.migration is None
    assert done.lifecycle.embedding.space == "copy_384_b"
    assert [e.reason for e in done.events] == ["EmbeddingSwitched"]


def test_an_embedding_change_reverted_or_redirected() -> None:
    lifecycle = start(dev(), [mv("1")])
    migrating = plan_cache(
        dev(), [mv("1", embeddingModel=OTHER)], lifecycle, embedding_model=OTHER, now=at(1)
    ).lifecycle
    back = plan_cache(dev(), [mv("1")], migrating, embedding_model=MINILM, now=at(2))
    assert back.lifecycle.embedding.migration is None
    assert [e.reason for e in back.events] == ["EmbeddingMigrationCancelled"]
    third = plan_cache(
        dev(), [mv("1", embeddingModel="x/y")], migrating, embedding_model="x/y", now=at(2)
    )
    assert third.lifecycle.embedding.migration.to_model == "x/y"
    assert third.lifecycle.embedding.migration.from_model == MINILM


def test_nothing_to_reembed_goes_straight_to_switching() -> None:
    lifecycle = Lifecycle()
    lifecycle = plan_cache(dev(), [mv("1")], lifecycle, embedding_model=MINILM, now=T0).lifecycle
    lifecycle = Lifecycle(
        embedding=plan_cache(
            dev(), [mv("1", embeddingModel=OTHER)], lifecycle, embedding_model=OTHER, now=T0
        ).lifecycle.embedding
    )
    assert (
        prepared(
            lifecycle, from_space="a", to_space="b", now=T0
        ).lifecycle.embedding.migration.phase
        == "Switching"
    )


# --- coherence helpers ----------------------------------------------------------------------


def test_a_node_serving_another_namespace_is_found() -> None:
    v1 = mv("1")
    lifecycle = start(dev(), [v1])
    reports = {"http://a": {"gpt-4o-mini": ns(v1)}, "http://b": {"gpt-4o-mini": "stale-ns"}}
    assert namespace_mismatches(lifecycle, reports) == [("http://b", "gpt-4o-mini", ns(v1))]
    switching = plan_cache(dev(), [mv("2")], lifecycle, embedding_model=MINILM, now=T0).lifecycle
    assert namespace_mismatches(switching, reports) == []  # the rollover handles it


# --- crash safety: every recorded state survives a write to status and back ------------------


@pytest.mark.parametrize("stage", ["switching", "warming", "retained", "preparing", "reembedding"])
def test_every_recorded_state_round_trips_through_status(stage: str) -> None:
    warm = {"warm": {"topN": 5}, "retainFor": "1h"}
    v1, v2 = mv("1", rollover=warm), mv("2", rollover=warm)
    lifecycle = start(dev(), [v1])
    lifecycle = plan_cache(dev(), [v2], lifecycle, embedding_model=MINILM, now=at(1)).lifecycle
    if stage != "switching":
        lifecycle = switch_all(lifecycle, [v2], at(2))
    if stage in ("retained", "preparing", "reembedding"):
        lifecycle = warmed(
            lifecycle, "gpt-4o-mini", None, settings=v2.spec.rollover.warm, now=at(3)
        ).lifecycle
    other = mv("2", rollover=warm, embeddingModel=OTHER)
    if stage in ("preparing", "reembedding"):
        lifecycle = plan_cache(
            dev(), [other], lifecycle, embedding_model=OTHER, now=at(4)
        ).lifecycle
    if stage == "reembedding":
        lifecycle = prepared(lifecycle, from_space="a", to_space="b", now=at(5)).lifecycle
    status = SemanticCacheStatus(
        active_namespaces=list(lifecycle.active),
        rollovers=list(lifecycle.rollovers),
        retained_namespaces=list(lifecycle.retained),
        embedding=lifecycle.embedding,
    )
    restored = Lifecycle.of(SemanticCacheStatus.model_validate(status.to_api()))
    assert restored == lifecycle
    # ...and a restarted operator's next plan is the same as the one that would have run.
    model = other if stage in ("preparing", "reembedding") else v2
    embedding = OTHER if model is other else MINILM
    assert plan_cache(dev(), [model], restored, embedding_model=embedding, now=at(9)) == plan_cache(
        dev(), [model], lifecycle, embedding_model=embedding, now=at(9)
    )
