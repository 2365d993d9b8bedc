"""CacheInvalidation, pure (domain/invalidation.py): scope → namespaces, node requests, counts,
the status at each step and after a crash."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from operator_testdata import NAMESPACE, cache

from cachefleet_contract.admin import InvalidatedCounts, InvalidateResult, SimilarTo
from cachefleet_operator.api.v1alpha1 import (
    ActiveNamespace,
    CacheInvalidation,
    RetainedNamespace,
    SemanticCache,
)
from cachefleet_operator.api.v1alpha1.cacheinvalidation import RemovedCounts
from cachefleet_operator.domain.invalidation import (
    ScopeError,
    combine,
    completed_status,
    failed_status,
    finished,
    namespace_status,
    node_request,
    running_status,
    target_namespaces,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def invalidation(**spec: Any) -> CacheInvalidation:
    return CacheInvalidation.model_validate(
        {
            "metadata": {"name": "purge", "namespace": NAMESPACE, "generation": 1},
            "spec": {"cacheRef": {"name": "chat"}, **spec},
        }
    )


def serving() -> SemanticCache:
    chat = cache()
    status = chat.status.model_copy(
        update={
            "active_namespaces": [
                ActiveNamespace(model_version="gpt-4o-mini", cache_namespace="gpt-4o-mini-b"),
                ActiveNamespace(model_version="claude", cache_namespace="claude-a"),
            ],
            "retained_namespaces": [
                RetainedNamespace(
                    cache_namespace="gpt-4o-mini-a",
                    model_version="gpt-4o-mini",
                    retired_at=T0,
                    purge_after=T0,
                )
            ],
        }
    )
    return chat.model_copy(update={"status": status})


def test_the_scope_names_the_namespaces() -> None:
    chat = serving()
    assert target_namespaces(invalidation(), chat) == ["claude-a", "gpt-4o-mini-b"]
    by_mv = invalidation(scope={"modelVersion": "gpt-4o-mini"})
    assert target_namespaces(by_mv, chat) == ["gpt-4o-mini-b"]
    retained = invalidation(scope={"cacheNamespace": "gpt-4o-mini-a"})
    assert target_namespaces(retained, chat) == ["gpt-4o-mini-a"]
    with pytest.raises(ScopeError) as unknown:
        target_namespaces(invalidation(scope={"modelVersion": "other"}), chat)
    assert unknown.value.reason == "ModelVersionNotServed"
    with pytest.raises(ScopeError) as missing:
        target_namespaces(invalidation(scope={"cacheNamespace": "nope"}), chat)
    assert missing.value.reason == "NamespaceNotFound"
    with pytest.raises(ScopeError) as empty:
        target_namespaces(invalidation(), cache())
    assert empty.value.reason == "NothingServed"


def test_the_node_request_carries_the_scope() -> None:
    request = node_request(
        invalidation(
            scope={
                "tenant": "team-a",
                "tags": ["billing"],
                "olderThan": "1h30m",
                "similarTo": {"text": "reset my password", "minSimilarity": 0.9, "limit": 5},
            }
        ).spec.scope
    )
    assert request.tenant == "team-a"
    assert request.tags == ["billing"]
    assert request.older_than_s == 5400
    assert request.similar_to == SimilarTo(text="reset my password", min_similarity=0.9, limit=5)
    assert node_request(invalidation().spec.scope).similar_to is None


def removed(**counts: int) -> InvalidateResult:
    """A node's answer to an invalidation of cache namespace `ns`."""
    return InvalidateResult(dry_run=False, tenant=None, removed={"ns": InvalidatedCounts(**counts)})


def test_counts_over_nodes_shared_and_per_node() -> None:
    answers = [removed(l1=2, store=5, vectors=5), removed(l1=1, store=0, vectors=0)]
    assert combine(answers, "ns", shared_vectors=True) == RemovedCounts(l1=3, store=5, vectors=5)
    per_node = [removed(l1=0, store=5, vectors=5), removed(l1=0, store=0, vectors=4)]
    assert combine(per_node, "ns", shared_vectors=False).vectors == 9


def test_a_run_records_each_namespace_and_a_crash_keeps_the_count() -> None:
    inv = invalidation(scope={"tenant": "team-a"})
    status = running_status(inv, ["a", "b"], now=T0)
    assert (status.phase, status.start_time) == ("Running", T0)
    assert [n.cache_namespace for n in status.namespaces] == ["a", "b"]
    status = namespace_status(status, "a", matched=RemovedCounts(store=4, vectors=4))
    status = namespace_status(status, "a", removed=RemovedCounts(store=4, vectors=4))
    # The operator died after the removal of "b" but before recording it: the redo finds 0.
    status = namespace_status(status, "b", matched=RemovedCounts(store=2, vectors=2))
    status = namespace_status(status, "b", removed=RemovedCounts(), resumed=True)
    assert status.namespaces[1].removed == RemovedCounts(store=2, vectors=2)
    assert all(n.done for n in status.namespaces)
    stored = inv.model_copy(update={"status": status})
    done, event = completed_status(stored, status, now=T0)
    assert done.phase == "Succeeded"
    assert done.removed == RemovedCounts(store=6, vectors=6)
    assert event.reason == "Invalidated"
    assert event.message == "removed 6 entries (l1 0, store 6, vectors 6) from a, b (tenant team-a)"
    assert finished(stored.model_copy(update={"status": done}))
    assert [(c.type, c.status, c.reason) for c in done.conditions] == [
        ("Complete", "True", "Invalidated"),
        ("Failed", "False", "Succeeded"),
    ]


def test_a_dry_run_and_a_failure() -> None:
    inv = invalidation(dryRun=True)
    status = running_status(inv, ["a"], now=T0)
    status = namespace_status(status, "a", removed=RemovedCounts(store=3))
    done, event = completed_status(inv, status, now=T0)
    assert (event.reason, event.message.split(" (")[0]) == ("DryRun", "would remove 3 entries")
    assert done.dry_run is True
    failed, warning = failed_status(invalidation(), running_status(invalidation(), ["a"], now=T0),
                                    "CacheNotFound", "SemanticCache chat not found", now=T0)  # fmt: skip
    assert failed.phase == "Failed"
    assert (warning.type, warning.reason) == ("Warning", "InvalidationFailed")
    assert [(c.type, c.status) for c in failed.conditions] == [
        ("Complete", "False"),
        ("Failed", "True"),
    ]
