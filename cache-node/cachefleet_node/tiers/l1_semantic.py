"""L1 semantic tier: in-process nearest-neighbour search over hot vectors, per partition.

Each partition (namespace, tenant, model, context fingerprint) has its own index, so a
search can only ever see candidates of its own partition. Small partitions are searched
exactly with one matrix-vector product (faster than any ANN below a few thousand rows);
partitions past `hnsw_min_partition` rows also get a faiss HNSW graph.

Graphs are built in the background, never on the request path: a build reads a snapshot of
the partition's matrix on a worker thread (faiss releases the GIL) while searches stay
exact; when it is done, the next use of the partition swaps it in. Rows added while a graph
is being built form the partition's tail, searched exactly beside the graph until the next
build, so no search misses a row. Deleted rows are tombstoned in the graph, which is rebuilt
(in the background again) when tombstones and tail pile up.

A partition's matrix starts at one row and grows (and shrinks) geometrically, so a partition
of one vector costs one vector, not a block. Every byte a partition holds (matrix capacity,
metadata, its graph and the one being built) is charged to the shared `MemoryBudget`, which
evicts the least recently used items across the in-process tiers; an optional bound on the
number of vectors applies too.
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from threading import Event

import faiss
import numpy as np
import structlog

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.memory import MemoryBudget
from cachefleet_node.tiers.vector_tier import Vector, VectorHit, VectorQuery

__all__ = ["SemanticCandidate", "SemanticIndex", "VectorMeta"]

log = structlog.get_logger(__name__)

# Bookkeeping bytes beside a vector's row and strings: the VectorMeta object, its slots in
# `metas`, `rows` and the index's LRU (with the (partition, tick) tuple), allocator rounding.
META_OVERHEAD_BYTES = 400
# A partition's fixed cost: the object, its dicts and lists, the numpy header, its dict slot.
PARTITION_OVERHEAD_BYTES = 1_200
HNSW_LINKS = 32
# Per graph node beside its vector copy: level-0 links (2 x M int32), upper levels, labels.
_GRAPH_NODE_BYTES = 2 * HNSW_LINKS * 4 + 64
BUILD_CHUNK_ROWS = 4_096  # rows a build adds between two looks at its cancellation
COLD_TICK = 0  # LRU stamp of refilled vectors nobody asked for yet: older than any use
# One thread builds every graph of the process, one after the other, on faiss's OpenMP
# threads less one core, so the event loop keeps a core while a build runs; builds of a
# cleared or replaced index are cancelled, never waited for.
_BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="l1-graph")
BUILD_THREADS = max(1, len(os.sched_getaffinity(0)) - 1)


@dataclass(frozen=True, slots=True)
class VectorMeta:
    """What the tier keeps beside each vector (`prompt` None: read it from the entry)."""

    entry_id: str
    namespace: str
    tenant: str
    prompt: str | None
    created_at: float
    expires_at: float
    tags: tuple[str, ...] = ()

    @property
    def size_bytes(self) -> int:
        """Bytes this metadata holds (its strings plus the per-vector bookkeeping)."""
        strings = (self.entry_id, self.namespace, self.tenant, self.prompt or "", *self.tags)
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


@dataclass(slots=True)
class _Graph:
    """A faiss HNSW graph and which entry each of its labels stands for."""

    index: faiss.IndexHNSWFlat
    labels: list[str | None]  # graph label -> entry id (None: deleted)
    label_of: dict[str, int]


def _build_graph(source: Vector, ids: list[str], cancelled: Event) -> _Graph | None:
    """Build a graph over `source` (one row per id) on a worker thread; None if cancelled."""
    faiss.omp_set_num_threads(BUILD_THREADS)  # this thread's OpenMP setting only
    dim = source.shape[1]
    index = faiss.IndexHNSWFlat(dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = 64
    for start in range(0, len(ids), BUILD_CHUNK_ROWS):
        if cancelled.is_set():
            return None
        index.add(source[start : start + BUILD_CHUNK_ROWS])
    return _Graph(index, list(ids), {entry_id: label for label, entry_id in enumerate(ids)})


class _Build:
    """A graph being built from the first `count` rows of `source` (the partition's matrix
    when the build started, never written in place while the build reads it)."""

    def __init__(self, source: Vector, ids: list[str]) -> None:
        self.source = source
        self.count = len(ids)
        self.added: set[str] = set()  # ids added since the snapshot (the next tail)
        self.removed: set[str] = set()  # ids of the snapshot removed or replaced since
        self.cancelled = Event()
        self.future: Future[_Graph | None] = _BUILDER.submit(
            _build_graph, source[: self.count], ids, self.cancelled
        )


class _Partition:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.vectors: Vector = np.zeros((1, dim), dtype=np.float32)
        self.metas: list[VectorMeta] = []
        self.meta_bytes = 0
        self.rows: dict[str, int] = {}
        self.graph: _Graph | None = None
        self.tail: set[str] = set()  # live ids the graph lacks (searched exactly)
        self.build: _Build | None = None

    def __len__(self) -> int:
        return len(self.metas)

    @property
    def node_bytes(self) -> int:
        """Bytes one row costs in a graph (its vector copy and its links)."""
        return self.dim * 4 + _GRAPH_NODE_BYTES

    @property
    def nbytes(self) -> int:
        """Bytes held: matrix capacity, metadata, graphs (built and being built), fixed cost."""
        graph_rows = 0 if self.graph is None else len(self.graph.labels)
        held = PARTITION_OVERHEAD_BYTES + self.vectors.nbytes + self.meta_bytes
        if self.build is not None:
            graph_rows += self.build.count
            if self.build.source is not self.vectors:  # a snapshot the build still reads
                held += self.build.source.nbytes
        return held + graph_rows * self.node_bytes

    def growth(self, meta: VectorMeta, hnsw_min: int) -> int:
        """Bytes that adding one more row of `meta` would charge at most."""
        count = len(self.metas)
        size = meta.size_bytes
        if count == self.vectors.shape[0]:
            size += self.vectors.nbytes  # the matrix doubles
        if count + 1 == hnsw_min:
            size += hnsw_min * self.node_bytes  # its first graph
        elif count + 1 > hnsw_min:
            size += self.node_bytes
        return size

    def _writable(self, row: int) -> None:
        """Copy the matrix before writing `row` in place if a build still reads that row."""
        build = self.build
        if build is not None and build.source is self.vectors and row < build.count:
            self.vectors = self.vectors.copy()

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
        self._writable(row)
        self.vectors[row] = vector
        self.metas.append(meta)
        self.meta_bytes += meta.size_bytes
        self.rows[meta.entry_id] = row
        if self.build is not None:
            self.build.added.add(meta.entry_id)
            self.tail.add(meta.entry_id)
        elif self.graph is not None:
            self.graph.index.add(vector.reshape(1, -1))
            self.graph.label_of[meta.entry_id] = len(self.graph.labels)
            self.graph.labels.append(meta.entry_id)

    def remove(self, entry_id: str) -> None:
        row = self.rows.pop(entry_id, None)
        if row is None:
            return
        self.meta_bytes -= self.metas[row].size_bytes
        last = len(self.metas) - 1
        if row != last:  # swap-remove keeps the matrix dense
            self._writable(row)
            self.vectors[row] = self.vectors[last]
            self.metas[row] = self.metas[last]
            self.rows[self.metas[row].entry_id] = row
        self.metas.pop()
        if 0 < last <= self.vectors.shape[0] // 4:  # `last` rows remain
            self._resize(self.vectors.shape[0] // 2)
        self.tail.discard(entry_id)
        if self.graph is not None:
            label = self.graph.label_of.pop(entry_id, None)
            if label is not None:
                self.graph.labels[label] = None
        if self.build is not None:
            self.build.added.discard(entry_id)
            self.build.removed.add(entry_id)

    def cancel_build(self) -> None:
        if self.build is not None:
            self.build.cancelled.set()
            self.build = None

    def maintain(self, hnsw_min: int) -> None:
        """Swap in a finished graph; start a build where one is due; drop graphs of
        partitions that shrank below `hnsw_min`."""
        count = len(self.metas)
        if count < hnsw_min:
            self.cancel_build()
            self.graph = None
            self.tail.clear()
            return
        build = self.build
        if build is not None:
            if not build.future.done():
                return
            self.build = None
            if (failure := build.future.exception()) is not None:
                log.warning("l1_graph_build_failed", rows=build.count, error=repr(failure))
                return  # the next use of the partition starts another
            graph = build.future.result()
            assert graph is not None  # only a cancelled build returns None (and is dropped)
            for entry_id in build.removed:
                label = graph.label_of.pop(entry_id, None)
                if label is not None:
                    graph.labels[label] = None
            self.graph = graph
            self.tail = build.added
        stale = 0 if self.graph is None else len(self.graph.labels) - len(self.graph.label_of)
        # Rebuild at the tail size that sends searches back to exact (`search`): a partition
        # is never left on exact search with no build under way.
        if self.graph is None or stale + len(self.tail) > count // 8:
            ids = [meta.entry_id for meta in self.metas]
            self.build = _Build(self.vectors, ids)

    def search(self, query: Vector, k: int) -> list[tuple[int, float]]:
        count = len(self.metas)
        if count == 0:
            return []
        graph = self.graph
        if graph is None or len(self.tail) > count // 8:  # exact beats a graph + a big tail
            return _top(self.vectors[:count] @ query, np.arange(count), k)
        tombstones = len(graph.labels) - len(graph.label_of)
        scores, labels = graph.index.search(query.reshape(1, -1), k + min(tombstones, 64))
        found: list[tuple[int, float]] = []
        for score, label in zip(scores[0], labels[0], strict=True):
            if label < 0:
                continue
            entry_id = graph.labels[label]
            if entry_id is not None:
                found.append((self.rows[entry_id], float(score)))
            if len(found) == k:
                break
        if self.tail:
            rows = np.fromiter((self.rows[e] for e in self.tail), np.int64, len(self.tail))
            found += _top(self.vectors[rows] @ query, rows, k)
            found = sorted(found, key=lambda x: -x[1])[:k]
        return found


def _top(scores: Vector, rows: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The `k` best (row, score) pairs, best first."""
    top = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
    return sorted(((int(rows[i]), float(scores[i])) for i in top), key=lambda x: -x[1])


class SemanticIndex:
    """Partitioned vector index, charged to a budget (and bounded to `max_entries` vectors
    unless that is None); graphs are built in the background."""

    tier = "l1_semantic"

    def __init__(
        self,
        dim: int,
        max_entries: int | None,
        budget: MemoryBudget,
        hnsw_min_partition: int = 8192,
    ) -> None:
        self.dim = dim
        self.max_entries = max_entries
        self.budget = budget
        self.hnsw_min_partition = hnsw_min_partition
        self._partitions: dict[str, _Partition] = {}
        self._lru: OrderedDict[str, tuple[str, int]] = OrderedDict()  # id -> (partition, tick)
        self._bytes = 0
        self.evictions = 0
        self.generation = 0  # counts `clear`s: a refill that sees it change starts again
        budget.register(self)

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def bytes_used(self) -> int:
        """Bytes this tier holds (matrices at capacity, metadata, graphs, bookkeeping)."""
        return self._bytes

    @property
    def building(self) -> int:
        """Partitions whose graph is being built (or built and not yet swapped in)."""
        return sum(part.build is not None for part in self._partitions.values())

    def add(self, partition: str, vector: Vector, meta: VectorMeta) -> None:
        """Insert (or replace) one vector; evict the least recently used past the bounds."""
        if self.max_entries == 0:
            return
        self.remove(meta.entry_id)
        self._insert(partition, vector, meta)
        self._lru[meta.entry_id] = (partition, self.budget.tick())
        while self.max_entries is not None and len(self._lru) > self.max_entries:
            self.evict_oldest()
        self.budget.reclaim()

    def add_cold(self, items: Iterable[tuple[str, Vector, VectorMeta]]) -> bool:
        """Insert vectors nobody has asked for yet (a refill) as the least recently used of
        all, so that the budget evicts them before anything in use; ids already held stay as
        they are. Evicts nothing for them: returns False, having added what fits, once the
        bound or the budget is reached."""
        if self.max_entries == 0:
            return False
        for partition, vector, meta in items:
            if meta.entry_id in self._lru:
                continue
            if self.max_entries is not None and len(self._lru) >= self.max_entries:
                return False
            part = self._partitions.get(partition)
            growth = (
                PARTITION_OVERHEAD_BYTES + self.dim * 4 + meta.size_bytes
                if part is None
                else part.growth(meta, self.hnsw_min_partition)
            )
            if self.budget.used_bytes + growth > self.budget.max_bytes:
                return False
            self._insert(partition, vector, meta)
            self._lru[meta.entry_id] = (partition, COLD_TICK)
            self._lru.move_to_end(meta.entry_id, last=False)
        return True

    def _insert(self, partition: str, vector: Vector, meta: VectorMeta) -> None:
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition(self.dim)
            before = 0
        else:
            before = part.nbytes
        part.add(vector, meta)
        part.maintain(self.hnsw_min_partition)
        self._charge(part.nbytes - before)

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
        before = part.nbytes  # a finished build swaps in, a due one starts
        part.maintain(self.hnsw_min_partition)
        self._charge(part.nbytes - before)
        results = []
        expired = []
        for row, score in part.search(query, k):
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
        """`search` as a `VectorTier`: the candidates carry their prompts where the tier
        keeps them (refilled vectors do not), never their vectors."""
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
        """Drop everything (builds under way included)."""
        for part in self._partitions.values():
            part.cancel_build()
        self._partitions.clear()
        self._lru.clear()
        self._charge(-self._bytes)
        self.generation += 1

    def close(self) -> None:
        """Drop everything (cancelling builds) and leave the budget (an index replaced or
        shut down; a lookup still holding it finds it empty)."""
        self.clear()
        self.budget.unregister(self)

    def _charge(self, size: int) -> None:
        self._bytes += size

    def _drop(self, partition: str, entry_id: str) -> None:
        part = self._partitions.get(partition)
        if part is None:
            return
        before = part.nbytes
        part.remove(entry_id)
        if len(part) == 0:
            part.cancel_build()
            del self._partitions[partition]
            self._charge(-before)
        else:
            self._charge(part.nbytes - before)
