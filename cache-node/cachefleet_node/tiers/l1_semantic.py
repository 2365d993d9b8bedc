"""L1 semantic tier: in-process nearest-neighbour search over hot vectors, per partition.

Each partition (namespace, tenant, model, context fingerprint) has its own index, so a
search can only ever see candidates of its own partition. Small partitions are searched
exactly with one matrix-vector product (faster than any ANN below a few thousand rows);
partitions past `hnsw_min_partition` rows also get a faiss HNSW graph. Deleted rows are
tombstoned in the graph, which is rebuilt when tombstones pile up. A partition's matrix
starts at one row and grows (and shrinks) geometrically, so a partition of one vector costs
one vector, not a block. The number of vectors is bounded, and every byte a partition holds
(matrix capacity, metadata, graph) is charged to the shared `MemoryBudget`, which evicts the
least recently used items across the in-process tiers.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.memory import MemoryBudget
from cachefleet_node.tiers.vector_tier import Vector, VectorHit, VectorQuery

__all__ = ["SemanticCandidate", "SemanticIndex", "VectorMeta"]

# Bookkeeping bytes beside a vector's row and strings: the VectorMeta object, its slots in
# `metas`, `rows` and the index's LRU (with the (partition, tick) tuple), allocator rounding.
META_OVERHEAD_BYTES = 400
# A partition's fixed cost: the object, its dicts and lists, the numpy header, its dict slot.
PARTITION_OVERHEAD_BYTES = 1_200
HNSW_LINKS = 32
# Per graph node beside its vector copy: level-0 links (2 x M int32), upper levels, labels.
_GRAPH_NODE_BYTES = 2 * HNSW_LINKS * 4 + 64


@dataclass(frozen=True, slots=True)
class VectorMeta:
    """What the tier keeps beside each vector."""

    entry_id: str
    namespace: str
    tenant: str
    prompt: str
    created_at: float
    expires_at: float
    tags: tuple[str, ...] = ()

    @property
    def size_bytes(self) -> int:
        """Bytes this metadata holds (its strings plus the per-vector bookkeeping)."""
        strings = (self.entry_id, self.namespace, self.tenant, self.prompt, *self.tags)
        return META_OVERHEAD_BYTES + sum(sys.getsizeof(text) for text in strings)

    @classmethod
    def of(cls, entry: CacheEntry) -> VectorMeta:
        """What the tier keeps beside the vector of a semantic entry."""
        return cls(
            entry_id=entry.entry_id,
            namespace=entry.namespace,
            tenant=entry.tenant,
            prompt=entry.prompt or "",
            created_at=entry.created_at,
            expires_at=entry.expires_at,
            tags=entry.tags,
        )


@dataclass(frozen=True, slots=True)
class SemanticCandidate:
    """A neighbour found by a search."""

    meta: VectorMeta
    similarity: float


class _Partition:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.vectors: Vector = np.zeros((1, dim), dtype=np.float32)
        self.metas: list[VectorMeta] = []
        self.meta_bytes = 0
        self.rows: dict[str, int] = {}
        self.graph: faiss.IndexHNSWFlat | None = None
        self.graph_labels: list[str | None] = []  # graph label -> entry id (None: deleted)
        self.label_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.metas)

    @property
    def nbytes(self) -> int:
        """Bytes held: matrix capacity, metadata, graph and the fixed cost."""
        graph = len(self.graph_labels) * (self.dim * 4 + _GRAPH_NODE_BYTES)
        return PARTITION_OVERHEAD_BYTES + self.vectors.nbytes + self.meta_bytes + graph

    def _resize(self, capacity: int) -> None:
        count = len(self.metas)
        resized = np.zeros((capacity, self.dim), dtype=np.float32)
        resized[:count] = self.vectors[:count]
        self.vectors = resized

    def add(self, vector: Vector, meta: VectorMeta) -> None:
        if meta.entry_id in self.rows:
            self.remove(meta.entry_id)
        row = len(self.metas)
        if row == self.vectors.shape[0]:
            self._resize(row * 2)
        self.vectors[row] = vector
        self.metas.append(meta)
        self.meta_bytes += meta.size_bytes
        self.rows[meta.entry_id] = row
        if self.graph is not None:
            self.graph.add(vector.reshape(1, -1))
            self.label_of[meta.entry_id] = len(self.graph_labels)
            self.graph_labels.append(meta.entry_id)

    def remove(self, entry_id: str) -> None:
        row = self.rows.pop(entry_id, None)
        if row is None:
            return
        self.meta_bytes -= self.metas[row].size_bytes
        last = len(self.metas) - 1
        if row != last:  # swap-remove keeps the matrix dense
            self.vectors[row] = self.vectors[last]
            self.metas[row] = self.metas[last]
            self.rows[self.metas[row].entry_id] = row
        self.metas.pop()
        if 0 < last <= self.vectors.shape[0] // 4:  # `last` rows remain
            self._resize(self.vectors.shape[0] // 2)
        label = self.label_of.pop(entry_id, None)
        if label is not None:
            self.graph_labels[label] = None

    def build_graph(self) -> None:
        graph = faiss.IndexHNSWFlat(self.dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efSearch = 64
        graph.add(self.vectors[: len(self.metas)])
        self.graph = graph
        self.graph_labels = [meta.entry_id for meta in self.metas]
        self.label_of = {meta.entry_id: label for label, meta in enumerate(self.metas)}

    def search(self, query: Vector, k: int, hnsw_min: int) -> list[tuple[int, float]]:
        count = len(self.metas)
        if count == 0:
            return []
        if count < hnsw_min:
            self.graph = None
            self.graph_labels, self.label_of = [], {}
            scores = self.vectors[:count] @ query
            top = np.argpartition(-scores, k - 1)[:k] if count > k else np.arange(count)
            return sorted(((int(i), float(scores[i])) for i in top), key=lambda x: -x[1])
        tombstones = len(self.graph_labels) - count
        if self.graph is None or tombstones > count // 4:
            self.build_graph()
            tombstones = 0  # a fresh graph has none (and `graph_labels` was empty before)
        assert self.graph is not None
        scores, labels = self.graph.search(query.reshape(1, -1), k + min(tombstones, 64))
        found: list[tuple[int, float]] = []
        for score, label in zip(scores[0], labels[0], strict=True):
            if label < 0:
                continue
            entry_id = self.graph_labels[label]
            if entry_id is not None and entry_id in self.rows:
                found.append((self.rows[entry_id], float(score)))
            if len(found) == k:
                break
        return found


class SemanticIndex:
    """Partitioned vector index with a bound on the number of vectors, charged to a budget."""

    tier = "l1_semantic"

    def __init__(
        self, dim: int, max_entries: int, budget: MemoryBudget, hnsw_min_partition: int = 8192
    ) -> None:
        self.dim = dim
        self.max_entries = max_entries
        self.budget = budget
        self.hnsw_min_partition = hnsw_min_partition
        self._partitions: dict[str, _Partition] = {}
        self._lru: OrderedDict[str, tuple[str, int]] = OrderedDict()  # id -> (partition, tick)
        self._bytes = 0
        self.evictions = 0
        budget.register(self)

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def bytes_used(self) -> int:
        """Bytes this tier holds (matrices at capacity, metadata, graphs, bookkeeping)."""
        return self._bytes

    def add(self, partition: str, vector: Vector, meta: VectorMeta) -> None:
        """Insert (or replace) one vector; evict the least recently used past the bounds."""
        if self.max_entries == 0:
            return
        self.remove(meta.entry_id)
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition(self.dim)
            before = 0
        else:
            before = part.nbytes
        part.add(vector, meta)
        self._charge(part.nbytes - before)
        self._lru[meta.entry_id] = (partition, self.budget.tick())
        while len(self._lru) > self.max_entries:
            self.evict_oldest()
        self.budget.reclaim()

    def oldest_tick(self) -> int | None:
        """The tick of the least recently used vector (for the shared budget)."""
        for _, tick in self._lru.values():
            return tick
        return None

    def evict_oldest(self) -> None:
        """Evict the least recently used vector (called by the shared budget)."""
        entry_id, (partition, _) = self._lru.popitem(last=False)
        self._drop(partition, entry_id)
        self.evictions += 1

    def search(
        self, partition: str, query: Vector, k: int, now: float, max_age_s: float | None = None
    ) -> list[SemanticCandidate]:
        """Up to `k` fresh neighbours of `query` inside `partition`, most similar first."""
        part = self._partitions.get(partition)
        if part is None:
            return []
        before = part.nbytes  # a search may build or drop the partition's graph
        found = part.search(query, k, self.hnsw_min_partition)
        self._charge(part.nbytes - before)
        results = []
        expired = []
        for row, score in found:
            meta = part.metas[row]
            if now >= meta.expires_at:
                expired.append(meta.entry_id)
                continue
            if max_age_s is not None and now - meta.created_at > max_age_s:
                continue
            results.append(SemanticCandidate(meta=meta, similarity=score))
        for entry_id in expired:
            self.remove(entry_id)
        if results and (best := results[0].meta.entry_id) in self._lru:
            self._lru[best] = (partition, self.budget.tick())
            self._lru.move_to_end(best)
        return results

    async def nearest(self, query: VectorQuery) -> list[VectorHit]:
        """`search` as a `VectorTier`: the candidates carry their prompts, not their vectors."""
        return [
            VectorHit(
                entry_id=c.meta.entry_id,
                namespace=c.meta.namespace,
                tenant=c.meta.tenant,
                partition=query.partition,
                similarity=c.similarity,
                created_at=c.meta.created_at,
                vector=None,
                tags=c.meta.tags,
                prompt=c.meta.prompt,
            )
            for c in self.search(
                query.partition, query.vector, query.limit, query.now, query.max_age_s
            )
        ]

    def similar_where(
        self, query: Vector, min_similarity: float, predicate: Callable[[VectorMeta], bool]
    ) -> list[SemanticCandidate]:
        """Every vector, in any partition, whose metadata matches and whose similarity to
        `query` is at least `min_similarity` (exact; for targeted invalidation)."""
        found = []
        for part in self._partitions.values():
            count = len(part)
            if count == 0:
                continue
            scores = part.vectors[:count] @ query
            for row in np.flatnonzero(scores >= min_similarity):
                meta = part.metas[int(row)]
                if predicate(meta):
                    found.append(SemanticCandidate(meta=meta, similarity=float(scores[row])))
        return found

    def remove(self, entry_id: str) -> None:
        """Drop one vector if present."""
        item = self._lru.pop(entry_id, None)
        if item is not None:
            self._drop(item[0], entry_id)

    def remove_where(self, predicate: Callable[[VectorMeta], bool]) -> int:
        """Drop every vector whose metadata matches; return how many."""
        doomed = [
            meta.entry_id
            for part in self._partitions.values()
            for meta in part.metas
            if predicate(meta)
        ]
        for entry_id in doomed:
            self.remove(entry_id)
        return len(doomed)

    def clear(self) -> None:
        """Drop everything."""
        self._partitions.clear()
        self._lru.clear()
        self._charge(-self._bytes)

    def _charge(self, size: int) -> None:
        self._bytes += size

    def _drop(self, partition: str, entry_id: str) -> None:
        part = self._partitions.get(partition)
        if part is None:
            return
        before = part.nbytes
        part.remove(entry_id)
        if len(part) == 0:
            del self._partitions[partition]
            self._charge(-before)
        else:
            self._charge(part.nbytes - before)
