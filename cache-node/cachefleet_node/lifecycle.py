"""Model-version lifecycle work on a node's tiers: re-embedding and targeted invalidation.

- `reembed_batch` copies stored prompts of a namespace into the migration's next vector space
  (the node's second embedder and collection), one resumable batch at a time.
- `invalidate_similar` removes the entries of a namespace whose prompts are semantically
  close to a text, across every partition (tenants, models, contexts), in every tier.

Warm-ups replay requests through the upstream and live with the HTTP layer (`server/warm.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.engine import CacheEngine
from cachefleet_node.tiers.milvus_store import VectorRow

__all__ = [
    "INSERT_BATCH",
    "NoMigrationError",
    "ReembedResult",
    "SimilarResult",
    "invalidate_similar",
    "reembed_batch",
]

log = structlog.get_logger(__name__)

INSERT_BATCH = 500  # rows per Milvus upsert


class NoMigrationError(RuntimeError):
    """Re-embedding needs a second embedding space (`embedding_next`)."""


@dataclass(frozen=True, slots=True)
class ReembedResult:
    """One re-embedding batch."""

    processed: int  # live entries read
    embedded: int  # of those, prompts written into the next space (semantic entries)
    next_cursor: str  # "" when the namespace has been walked through
    seconds: float

    @property
    def done(self) -> bool:
        """Whether the walk is complete."""
        return self.next_cursor == ""


async def reembed_batch(
    engine: CacheEngine, namespace: str, cursor: str, limit: int
) -> ReembedResult:
    """Embed about `limit` stored prompts from `cursor` into the migration's other space.

    Rows get the entry's partition fields, tags, creation and expiry, exactly as a write
    would. Idempotent: a row is an upsert keyed by entry id, so a repeated or overlapping
    batch rewrites the same rows. Raises `NoMigrationError` without a second space,
    `ConnectionError` when its collection is unreachable, `ValueError` for a foreign cursor.
    """
    target = engine.spaces.target
    if target is None:
        raise NoMigrationError("no embedding_next is configured on this node")
    vectors = target.vectors
    if vectors is None or not vectors.connected:
        raise ConnectionError("the next embedding space's Milvus collection is unreachable")
    started = time.perf_counter()
    entries, next_cursor = await engine.store.scan_entries(namespace, cursor, limit)
    semantic = [e for e in entries if e.partition is not None and e.prompt]
    if semantic:
        embedded = await target.embedder.embed([e.prompt or "" for e in semantic])
        rows = [VectorRow(e, v) for e, v in zip(semantic, embedded, strict=True)]
        for start in range(0, len(rows), INSERT_BATCH):
            await vectors.insert(rows[start : start + INSERT_BATCH])
        engine.metrics.reembedded.inc(len(rows))
    return ReembedResult(
        processed=len(entries),
        embedded=len(semantic),
        next_cursor=next_cursor,
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True, slots=True)
class SimilarResult:
    """What a similar-to invalidation matched and removed (or would remove)."""

    scope: InvalidationScope  # narrowed to the matched entry ids (for the coherence bus)
    counts: dict[str, int]


async def invalidate_similar(
    engine: CacheEngine,
    scope: InvalidationScope,
    text: str,
    min_similarity: float,
    limit: int,
    *,
    dry_run: bool = False,
) -> SimilarResult:
    """Remove (or count) the scope's entries whose prompt is at least `min_similarity`
    similar to `text`, in every partition of the namespace.

    Candidates come from Milvus (the active space's collection, filtered by the scope and
    `limit` nearest rows) and from this node's L1 semantic index, and are re-checked against
    the scope and the similarity. Matched entries are deleted from the entry store, both
    collections of a migration, and this node's L1; the caller broadcasts the returned scope
    so every node drops them from its L1. Raises `ConnectionError` if a tier is unreachable.
    """
    space = engine.spaces.active
    vector = (await space.embedder.embed([text]))[0]
    matched: dict[str, tuple[str, float]] = {}  # entry id -> (tenant, similarity)

    def in_scope(namespace: str, tenant: str, tags: tuple[str, ...], created: float) -> bool:
        return scope.matches(namespace, tenant, tags, created)

    if space.vectors is not None:
        if not space.vectors.connected:
            raise ConnectionError("milvus is unreachable")
        for hit in await space.vectors.search_scope(scope, vector, limit):
            if hit.similarity >= min_similarity and in_scope(
                hit.namespace, hit.tenant, hit.tags, hit.created_at
            ):
                matched[hit.entry_id] = (hit.tenant, hit.similarity)
    for candidate in engine.l1_semantic.similar_where(
        vector,
        min_similarity,
        lambda m: in_scope(m.namespace, m.tenant, m.tags, m.created_at),
    ):
        meta = candidate.meta
        matched.setdefault(meta.entry_id, (meta.tenant, candidate.similarity))
    if len(matched) > limit:
        ranked = sorted(matched.items(), key=lambda item: -item[1][1])[:limit]
        matched = dict(ranked)

    targeted = InvalidationScope(
        namespace=scope.namespace,
        tenant=scope.tenant,
        tags=scope.tags,
        created_before=scope.created_before,
        entry_ids=frozenset(matched),
    )
    counts = {"matched": len(matched), "l1": 0, "store": 0, "vectors": 0}
    if not matched:
        return SimilarResult(targeted, counts)
    ids = sorted(matched)
    refs = [(matched[entry_id][0], entry_id) for entry_id in ids]
    if dry_run:
        counts["l1"] = engine.l1_exact.count_where(lambda e: _targets(targeted, e))
    else:
        counts["l1"] = engine.drop_l1(targeted)
    counts["store"] = await engine.store.delete_entries(scope.namespace, refs, dry_run=dry_run)
    for name, other in (("vectors", engine.spaces.active), ("vectors_next", engine.spaces.target)):
        if other is None or other.vectors is None:
            continue
        if not other.vectors.connected:
            raise ConnectionError(f"milvus collection {other.vectors.collection} unreachable")
        counts[name] = await other.vectors.delete_ids(ids, dry_run=dry_run)
    if not dry_run:
        for tier, count in counts.items():
            if tier != "matched":
                engine.metrics.invalidated.labels(tier).inc(count)
    log.info(
        "invalidate_similar",
        namespace=scope.namespace,
        tenant=scope.tenant,
        min_similarity=min_similarity,
        dry_run=dry_run,
        **counts,
    )
    return SimilarResult(targeted, counts)


def _targets(scope: InvalidationScope, entry: CacheEntry) -> bool:
    return scope.matches(
        entry.namespace, entry.tenant, entry.tags, entry.created_at, entry.entry_id
    )
