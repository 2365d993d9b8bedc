"""Embedding migration (`embeddingModel` changed): every node loads the next model live and
dual-writes (Preparing), the stored prompts of every namespace are re-embedded batch by batch
(Reembedding), then every node searches the new space (Switching)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime

from cachefleet_contract.admin import ReembedRequest, ReembedResult
from cachefleet_operator.api.v1alpha1 import EmbeddingMigration, EmbeddingStatus, ReembedCursor
from cachefleet_operator.api.v1alpha1.semanticcache import Reembedding, SemanticCache
from cachefleet_operator.domain.durations import format_duration
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.lifecycle.state import Lifecycle, Plan

__all__ = [
    "REEMBED_STEP_S",
    "embedding_migration_refused",
    "embedding_models",
    "embedding_switched",
    "plan_embedding",
    "prepared",
    "reembed_request",
    "reembedded",
]

#: Seconds of re-embedding one batch aims at (at the configured rate).
REEMBED_STEP_S = 2.0


def _loses_vectors(cache: SemanticCache) -> bool:
    """Whether a migration of this cache would throw its vectors away: Milvus Lite in each node
    (an emptyDir) and GPU embedding, whose migration ends with a rollout of the nodes (back
    onto the GPU pods, which serve the new model then). With in-node embedding a migration
    restarts nothing, and a shared Milvus survives any rollout."""
    return cache.spec.semantic_tier.embedded is not None and cache.spec.embedding.mode == "gpu"


def embedding_migration_refused(
    cache: SemanticCache, lifecycle: Lifecycle, desired: str
) -> str | None:
    """Why the embedding migration to `desired` is not started (`Stalled`, reason
    `EmbeddingMigrationRefused`), or None."""
    embedding = lifecycle.embedding
    if embedding is None or embedding.migration is not None or embedding.model == desired:
        return None
    if not _loses_vectors(cache):
        return None
    return (
        f"embedding model {embedding.model} -> {desired} not started: with "
        "semanticTier.embedded each node keeps its vectors in Milvus Lite on the pod's "
        "emptyDir, and with embedding.mode gpu the migration ends with a rollout of the nodes "
        "(back onto the GPU pods), which would throw every re-embedded vector away. Use a "
        "shared Milvus (semanticTier.managed or semanticTier.external), or embedding.mode "
        f"local (the migration then restarts nothing), or set embeddingModel back to "
        f"{embedding.model}"
    )


def plan_embedding(
    cache: SemanticCache, current: EmbeddingStatus | None, desired: str, now: datetime
) -> tuple[EmbeddingStatus, list[EventSpec]]:
    """The embedding status once `desired` (the ModelVersions' embedding model) is planned:
    a migration started, restarted or cancelled (none started where it would lose the
    vectors: `embedding_migration_refused` says why)."""
    if current is None:
        return EmbeddingStatus(model=desired), []
    migration = current.migration
    if migration is None:
        if current.model == desired or _loses_vectors(cache):
            return current, []
        return current.model_copy(
            update={"migration": _migration(current.model, desired, current.space, now)}
        ), [
            EventSpec(
                "Normal",
                "EmbeddingMigrationStarted",
                f"embedding model {current.model} -> {desired}: every node loads {desired} "
                "live as the next model (dual writes; no restart), then the stored prompts are "
                "re-embedded",
            )
        ]
    if migration.to_model == desired or migration.phase == "Switching":
        return current, []  # (a switch in flight finishes first; a later pass goes on)
    if desired == migration.from_model:
        return current.model_copy(update={"migration": None}), [
            EventSpec(
                "Normal",
                "EmbeddingMigrationCancelled",
                f"embedding model back to {desired}: migration to {migration.to_model} dropped",
            )
        ]
    return current.model_copy(
        update={"migration": _migration(migration.from_model, desired, current.space, now)}
    ), [
        EventSpec(
            "Normal",
            "EmbeddingMigrationRestarted",
            f"embedding model {migration.from_model} -> {desired} (was -> {migration.to_model})",
        )
    ]


def _migration(
    from_model: str, to_model: str, from_space: str | None, now: datetime
) -> EmbeddingMigration:
    return EmbeddingMigration(
        from_model=from_model,
        to_model=to_model,
        from_space=from_space,
        phase="Preparing",
        started_at=now,
        message=f"waiting for every node to load {to_model} as the next embedding model",
    )


def embedding_models(lifecycle: Lifecycle, fallback: str) -> tuple[str, str | None]:
    """(model serving lookups, next model) for the node config."""
    embedding = lifecycle.embedding
    if embedding is None:
        return fallback, None
    if embedding.migration is not None:
        return embedding.migration.from_model, embedding.migration.to_model
    return embedding.model, None


def _with_migration(lifecycle: Lifecycle, migration: EmbeddingMigration) -> Lifecycle:
    assert lifecycle.embedding is not None
    return replace(
        lifecycle, embedding=lifecycle.embedding.model_copy(update={"migration": migration})
    )


def prepared(
    lifecycle: Lifecycle,
    *,
    from_space: str | None,
    to_space: str,
    now: datetime,
) -> Plan:
    """Every node runs the next model (dual writes): re-embed every active and retained
    namespace (in that order)."""
    migration = lifecycle.embedding.migration if lifecycle.embedding else None
    if migration is None or migration.phase != "Preparing":
        return Plan(lifecycle)
    namespaces: list[str] = []
    for name in [a.cache_namespace for a in lifecycle.active] + [
        e.cache_namespace for e in lifecycle.retained
    ]:
        if name not in namespaces:
            namespaces.append(name)
    updated = migration.model_copy(
        update={
            "phase": "Reembedding" if namespaces else "Switching",
            "from_space": from_space or migration.from_space,
            "to_space": to_space,
            "namespaces": [ReembedCursor(cache_namespace=name) for name in namespaces],
            "total": None if namespaces else 0,
            "message": f"re-embedding {len(namespaces)} namespace(s) into {to_space}"
            if namespaces
            else f"nothing to re-embed: switching every node to {to_space}",
        }
    )
    event = EventSpec(
        "Normal",
        "Reembedding",
        f"every node dual-writes into {to_space}: re-embedding "
        f"{', '.join(namespaces) or 'nothing'}",
    )
    return Plan(_with_migration(lifecycle, updated), [event])


def reembed_request(lifecycle: Lifecycle, settings: Reembedding) -> ReembedRequest | None:
    """The next `POST /v1/cache/reembed` batch: the first namespace not done, about
    `REEMBED_STEP_S` at the rate."""
    migration = lifecycle.embedding.migration if lifecycle.embedding else None
    if migration is None or migration.phase != "Reembedding":
        return None
    for cursor in migration.namespaces:
        if not cursor.done:
            per_step = max(1, math.ceil(settings.rate_per_second * REEMBED_STEP_S))
            return ReembedRequest(
                namespace=cursor.cache_namespace,
                cursor=cursor.cursor,
                limit=min(settings.batch_size, per_step),
            )
    return None


def reembedded(
    lifecycle: Lifecycle,
    request: ReembedRequest,
    result: ReembedResult,
    *,
    began: datetime,
    now: datetime,
) -> Plan:
    """A batch's answer recorded (cursor, counts, rate, ETA); all done: on to Switching.

    `began`: when the batch was sent (the first one starts the rate's clock)."""
    migration = lifecycle.embedding.migration if lifecycle.embedding else None
    if migration is None or migration.phase != "Reembedding":
        return Plan(lifecycle)
    cursors = []
    for cursor in migration.namespaces:
        if cursor.cache_namespace == request.namespace and cursor.cursor == request.cursor:
            cursor = cursor.model_copy(
                update={
                    "cursor": result.next_cursor,
                    "processed": cursor.processed + result.processed,
                    "total": result.total,
                    "done": result.done or not result.next_cursor,
                }
            )
        cursors.append(cursor)
    started = migration.reembed_started_at or began
    done_total = sum(c.processed for c in cursors)
    totals = [c.total for c in cursors]
    grand_total = sum(t for t in totals if t is not None) if any(totals) else None
    elapsed = (now - started).total_seconds()
    rate = done_total / elapsed if elapsed > 0 else None
    eta = None
    if rate and grand_total is not None:
        eta = format_duration(max(0, grand_total - done_total) / rate)
    all_done = all(c.done for c in cursors)
    progress = f"{done_total}/{grand_total if grand_total is not None else '?'} entries"
    if grand_total:
        progress += f" ({100 * min(done_total, grand_total) / grand_total:.0f}%)"
    if rate:
        progress += f", {rate:.1f}/s"
    if eta and not all_done:
        progress += f", ETA {eta}"
    updated = migration.model_copy(
        update={
            "namespaces": cursors,
            "processed": done_total,
            "total": grand_total,
            "reembed_started_at": started,
            "rate": f"{rate:.1f}" if rate else migration.rate,
            "eta": eta if not all_done else "0s",
            "phase": "Switching" if all_done else "Reembedding",
            "message": (
                f"re-embedded {progress}: switching every node to {migration.to_space}"
                if all_done
                else f"re-embedding into {migration.to_space}: {progress}"
            ),
        }
    )
    events = []
    if all_done:
        events.append(
            EventSpec(
                "Normal",
                "Reembedded",
                f"re-embedded {progress} into {migration.to_space}; switching lookups",
            )
        )
    return Plan(_with_migration(lifecycle, updated), events)


def embedding_switched(lifecycle: Lifecycle, *, nodes: int, now: datetime) -> Plan:
    """Every node searches the new space: the migration is over (the config drops
    `embedding_next` and names the new model)."""
    embedding = lifecycle.embedding
    migration = embedding.migration if embedding else None
    if embedding is None or migration is None:
        return Plan(lifecycle)
    seconds = (now - migration.started_at).total_seconds()
    event = EventSpec(
        "Normal",
        "EmbeddingSwitched",
        f"{nodes} node(s) search {migration.to_space} ({migration.to_model}); "
        f"{migration.processed} entries re-embedded"
        + (f" at {migration.rate}/s" if migration.rate else "")
        + f"; migration took {format_duration(seconds)}",
    )
    done = EmbeddingStatus(model=migration.to_model, space=migration.to_space)
    return Plan(replace(lifecycle, embedding=done), [event])
