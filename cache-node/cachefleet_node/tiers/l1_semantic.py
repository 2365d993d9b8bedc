"""L1 semantic tier: in-process nearest-neighbour search over hot vectors, per partition.

Each partition (namespace, tenant, model, context fingerprint) has its own index, so a
search can only ever see candidates of its own partition. Small partitions are searched
exactly with one matrix-vector product (faster than any ANN below a few thousand rows);
partitions past `hnsw_min_partition` rows also get a faiss HNSW graph. Deleted rows are
tombstoned in the graph, which is rebuilt when tombstones pile up. The total number of
vectors is bounded; the least recently used ones are evicted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

__all__ = ["SemanticCandidate", "SemanticIndex", "VectorMeta"]

Vector = npt.NDArray[np.float32]


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


@dataclass(frozen=True, slots=True)
class SemanticCandidate:
    """A neighbour found by a search."""

    meta: VectorMeta
    similarity: float


class _Partition:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.vectors: Vector = np.zeros((16, dim), dtype=np.float32)
        self.metas: list[VectorMeta] = []
        self.rows: dict[str, int] = {}
        self.graph: faiss.IndexHNSWFlat | None = None
        self.graph_labels: list[str | None] = []  # graph label -> entry id (None: deleted)
        self.label_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.metas)

    def add(self, vector: Vector, meta: VectorMeta) -> None:
        if meta.entry_id in self.rows:
            self.remove(meta.entry_id)
        row = len(self.metas)
        if row == self.vectors.shape[0]:
            grown = np.zeros((row * 2, self.dim), dtype=np.float32)
            grown[:row] = self.vectors[:row]
            self.vectors = grown
        self.vectors[row] = vector
        self.metas.append(meta)
        self.rows[meta.entry_id] = row
        if self.graph is not None:
            self.graph.add(vector.reshape(1, -1))
            self.label_of[meta.entry_id] = len(self.graph_labels)
            self.graph_labels.append(meta.entry_id)

    def remove(self, entry_id: str) -> None:
        row = self.rows.pop(entry_id, None)
        if row is None:
            return
        last = len(self.metas) - 1
        if row != last:  # swap-remove keeps the matrix dense
            self.vectors[row] = self.vectors[last]
            self.metas[row] = self.metas[last]
            self.rows[self.metas[row].entry_id] = row
        self.metas.pop()
        label = self.label_of.pop(entry_id, None)
        if label is not None:
            self.graph_labels[label] = None

    def build_graph(self) -> None:
        graph = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
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
    """Partitioned vector index with a global bound on the number of vectors."""

    def __init__(self, dim: int, max_entries: int, hnsw_min_partition: int = 8192) -> None:
        self.dim = dim
        self.max_entries = max_entries
        self.hnsw_min_partition = hnsw_min_partition
        self._partitions: dict[str, _Partition] = {}
        self._lru: OrderedDict[str, str] = OrderedDict()  # entry id -> partition
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._lru)

    def add(self, partition: str, vector: Vector, meta: VectorMeta) -> None:
        """Insert (or replace) one vector; evict the least recently used past the bound."""
        if self.max_entries == 0:
            return
        previous = self._lru.pop(meta.entry_id, None)
        if previous is not None and previous != partition:
            self._drop(previous, meta.entry_id)
        self._partitions.setdefault(partition, _Partition(self.dim)).add(vector, meta)
        self._lru[meta.entry_id] = partition
        while len(self._lru) > self.max_entries:
            entry_id, old_partition = self._lru.popitem(last=False)
            self._drop(old_partition, entry_id)
            self.evictions += 1

    def search(
        self, partition: str, query: Vector, k: int, now: float, max_age_s: float | None = None
    ) -> list[SemanticCandidate]:
        """Up to `k` fresh neighbours of `query` inside `partition`, most similar first."""
        part = self._partitions.get(partition)
        if part is None:
            return []
        results = []
        expired = []
        for row, score in part.search(query, k, self.hnsw_min_partition):
            meta = part.metas[row]
            if now >= meta.expires_at:
                expired.append(meta.entry_id)
                continue
            if max_age_s is not None and now - meta.created_at > max_age_s:
                continue
            results.append(SemanticCandidate(meta=meta, similarity=score))
        for entry_id in expired:
            self.remove(entry_id)
        if results:
            self._lru.move_to_end(results[0].meta.entry_id)
        return results

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
        partition = self._lru.pop(entry_id, None)
        if partition is not None:
            self._drop(partition, entry_id)

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

    def _drop(self, partition: str, entry_id: str) -> None:
        part = self._partitions.get(partition)
        if part is None:
            return
        part.remove(entry_id)
        if len(part) == 0:
            del self._partitions[partition]
