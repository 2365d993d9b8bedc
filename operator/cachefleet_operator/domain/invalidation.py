"""`CacheInvalidation`, pure: which namespaces it covers, what the nodes are asked, and its
status at each step (Pending → Running, one namespace at a time → Succeeded or Failed).

A run is one-shot: once `Succeeded` or `Failed` it never runs again. Progress is written per
namespace, and before removing a namespace's entries a dry run records what matches, so a
crash mid-run resumes after the last namespace done and reports what was removed even when
the interrupted removal already happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cachefleet_contract.admin import InvalidateRequest, InvalidateResult, SimilarTo
from cachefleet_operator.api.v1alpha1 import CacheInvalidation, SemanticCache
from cachefleet_operator.api.v1alpha1.cacheinvalidation import (
    CacheInvalidationStatus,
    InvalidationScope,
    NamespaceResult,
    RemovedCounts,
)
from cachefleet_operator.domain.conditions import ConditionUpdate, merge_conditions
from cachefleet_operator.domain.durations import parse_duration
from cachefleet_operator.domain.events import EventSpec

__all__ = [
    "COMPLETE",
    "FAILED",
    "ScopeError",
    "combine",
    "completed_status",
    "failed_status",
    "finished",
    "namespace_status",
    "node_request",
    "running_status",
    "summary",
    "target_namespaces",
]

COMPLETE = "Complete"
FAILED = "Failed"


class ScopeError(ValueError):
    """The scope names nothing the cache has; `reason` goes to the `Failed` condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def finished(invalidation: CacheInvalidation) -> bool:
    """Succeeded or Failed: it never runs again."""
    return invalidation.status.phase in ("Succeeded", "Failed")


def target_namespaces(invalidation: CacheInvalidation, cache: SemanticCache) -> list[str]:
    """The cache namespaces in scope: a ModelVersion's active one, a named one (active or
    retained), or every active one."""
    scope = invalidation.spec.scope
    active = {a.model_version: a.cache_namespace for a in cache.status.active_namespaces}
    known = set(active.values()) | {r.cache_namespace for r in cache.status.retained_namespaces}
    if scope.model_version is not None:
        if scope.model_version not in active:
            raise ScopeError(
                "ModelVersionNotServed",
                f"SemanticCache {cache.metadata.name} does not serve ModelVersion "
                f"{scope.model_version} (serves: {', '.join(sorted(active)) or 'nothing yet'})",
            )
        return [active[scope.model_version]]
    if scope.cache_namespace is not None:
        if scope.cache_namespace not in known:
            raise ScopeError(
                "NamespaceNotFound",
                f"cache namespace {scope.cache_namespace} is neither active nor retained in "
                f"SemanticCache {cache.metadata.name} (known: {', '.join(sorted(known))})",
            )
        return [scope.cache_namespace]
    if not active:
        raise ScopeError(
            "NothingServed", f"SemanticCache {cache.metadata.name} has no active namespace yet"
        )
    return sorted(set(active.values()))


def node_request(scope: InvalidationScope) -> InvalidateRequest:
    """The body of `POST /v1/cache/invalidate` for `scope`, without the cache namespace (the
    caller sets `namespace` and `dry_run` per call)."""
    similar = None
    if scope.similar_to is not None:
        wanted = scope.similar_to
        similar = SimilarTo(text=wanted.text, min_similarity=wanted.min_similarity)
        if wanted.limit is not None:
            similar = similar.model_copy(update={"limit": wanted.limit})
    return InvalidateRequest(
        tenant=scope.tenant,
        tags=list(scope.tags or ()),
        older_than_s=parse_duration(scope.older_than) if scope.older_than else None,
        similar_to=similar,
    )


def combine(
    answers: Sequence[InvalidateResult], namespace: str, *, shared_vectors: bool
) -> RemovedCounts:
    """Counts of one namespace over the nodes asked: each node's own L1 adds up; the shared
    exact tier was emptied by the first (max); vectors likewise, unless each node has its own
    Milvus Lite (sum)."""
    l1 = store = vectors_max = vectors_sum = 0
    for answer in answers:
        counts = answer.removed.get(namespace)
        if counts is None:
            continue
        l1 += counts.l1
        store = max(store, counts.store)
        vectors_max = max(vectors_max, counts.vectors)
        vectors_sum += counts.vectors
    return RemovedCounts(l1=l1, store=store, vectors=vectors_max if shared_vectors else vectors_sum)


def _add(a: RemovedCounts, b: RemovedCounts) -> RemovedCounts:
    return RemovedCounts(l1=a.l1 + b.l1, store=a.store + b.store, vectors=a.vectors + b.vectors)


def _most(a: RemovedCounts, b: RemovedCounts) -> RemovedCounts:
    return RemovedCounts(
        l1=max(a.l1, b.l1), store=max(a.store, b.store), vectors=max(a.vectors, b.vectors)
    )


def _conditions(
    invalidation: CacheInvalidation, updates: Sequence[ConditionUpdate], now: datetime
) -> Any:
    return merge_conditions(
        invalidation.status.conditions,
        updates,
        generation=invalidation.metadata.generation or 0,
        now=now,
    )


def running_status(
    invalidation: CacheInvalidation,
    namespaces: Sequence[str],
    *,
    now: datetime,
    message: str = "",
    status: CacheInvalidationStatus | None = None,
) -> CacheInvalidationStatus:
    """Started (or still going): the namespaces in scope, the start time."""
    status = status or invalidation.status
    results = status.namespaces or [NamespaceResult(cache_namespace=ns) for ns in namespaces]
    return status.model_copy(
        update={
            "observed_generation": invalidation.metadata.generation or 0,
            "phase": "Running",
            "dry_run": invalidation.spec.dry_run,
            "namespaces": results,
            "start_time": status.start_time or now,
            "message": message or status.message or "running",
            "conditions": _conditions(
                invalidation,
                [
                    ConditionUpdate(COMPLETE, "False", "Running", message or "running"),
                    ConditionUpdate(FAILED, "False", "Running", ""),
                ],
                now,
            ),
        }
    )


def namespace_status(
    status: CacheInvalidationStatus,
    namespace: str,
    *,
    matched: RemovedCounts | None = None,
    removed: RemovedCounts | None = None,
    resumed: bool = False,
) -> CacheInvalidationStatus:
    """One namespace's dry-run count (`matched`) or result (`removed`: done) recorded.

    `resumed`: the removal was sent again after a crash; the first one may have removed the
    entries already, so the recorded dry-run count is the floor of what was removed."""
    results = []
    for result in status.namespaces:
        if result.cache_namespace == namespace:
            update: dict[str, Any] = {}
            if matched is not None:
                update["matched"] = matched
            if removed is not None:
                floor = result.matched if resumed else None
                update["removed"] = removed if floor is None else _most(removed, floor)
                update["done"] = True
            result = result.model_copy(update=update)
        results.append(result)
    return status.model_copy(update={"namespaces": results})


def summary(invalidation: CacheInvalidation, status: CacheInvalidationStatus) -> str:
    total = RemovedCounts()
    for result in status.namespaces:
        total = _add(total, result.removed or RemovedCounts())
    scope = invalidation.spec.scope
    narrowed = [
        f"tenant {scope.tenant}" if scope.tenant else "",
        f"tags {', '.join(scope.tags)}" if scope.tags else "",
        f"older than {scope.older_than}" if scope.older_than else "",
        (
            f"similar to {scope.similar_to.text[:60]!r} >= {scope.similar_to.min_similarity:g}"
            if scope.similar_to
            else ""
        ),
    ]
    where = ", ".join(r.cache_namespace for r in status.namespaces)
    extra = "; ".join(part for part in narrowed if part)
    verb = "would remove" if invalidation.spec.dry_run else "removed"
    return (
        f"{verb} {total.store} entries (l1 {total.l1}, store {total.store}, vectors "
        f"{total.vectors}) from {where}" + (f" ({extra})" if extra else "")
    )


def completed_status(
    invalidation: CacheInvalidation, status: CacheInvalidationStatus, *, now: datetime
) -> tuple[CacheInvalidationStatus, EventSpec]:
    """Every namespace done: Succeeded with the totals, and the audit Event."""
    total = RemovedCounts()
    for result in status.namespaces:
        total = _add(total, result.removed or RemovedCounts())
    text = summary(invalidation, status)
    reason = "DryRun" if invalidation.spec.dry_run else "Invalidated"
    done = status.model_copy(
        update={
            "phase": "Succeeded",
            "removed": total,
            "completion_time": now,
            "message": text,
            "conditions": _conditions(
                invalidation,
                [
                    ConditionUpdate(COMPLETE, "True", reason, text),
                    ConditionUpdate(FAILED, "False", "Succeeded", ""),
                ],
                now,
            ),
        }
    )
    return done, EventSpec("Normal", reason, text)


def failed_status(
    invalidation: CacheInvalidation,
    status: CacheInvalidationStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
) -> tuple[CacheInvalidationStatus, EventSpec]:
    """Failed for good (it never runs again): what was removed so far stays recorded."""
    total = RemovedCounts()
    for result in status.namespaces:
        total = _add(total, result.removed or RemovedCounts())
    failed = status.model_copy(
        update={
            "observed_generation": invalidation.metadata.generation or 0,
            "phase": "Failed",
            "dry_run": invalidation.spec.dry_run,
            "removed": total,
            "start_time": status.start_time or now,
            "completion_time": now,
            "message": message,
            "conditions": _conditions(
                invalidation,
                [
                    ConditionUpdate(COMPLETE, "False", reason, message),
                    ConditionUpdate(FAILED, "True", reason, message),
                ],
                now,
            ),
        }
    )
    return failed, EventSpec("Warning", "InvalidationFailed", f"{reason}: {message}")
