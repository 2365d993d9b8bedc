"""L1 semantic tier: in-process nearest-neighbour search over hot vectors, per partition.

Each partition (namespace, tenant, model, context fingerprint) has its own index, so a
search can only ever see candidates of its own partition. Small partitions are searched
exactly, with one scan of its rows (faster than any ANN below a few thousand rows);
partitions past `hnsw_min_partition` rows also get a faiss HNSW graph.

Vectors are held once, in float16, in the storage of a faiss flat scalar-quantizer index
(exact searches decode them with SIMD and accumulate in float32; numpy writes rows in place).
A graph keeps its own 4-bit scalar-quantized copy (half a byte per dimension) to walk; the top
`RESCORE_CANDIDATES` it finds are re-scored exactly from the float16 rows, so the similarity a
search reports is the cosine against the stored float16 vector (within 5e-4 of the float32
cosine for unit vectors; 5.7e-5 at most measured on MiniLM vectors).

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

import ctypes
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from threading import Event

import faiss
import numpy as np
import numpy.typing as npt
import structlog

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.memory import MemoryBudget
from cachefleet_node.tiers.vector_tier import Vector, VectorHit, VectorQuery

__all__ = ["SemanticCandidate", "SemanticIndex", "VectorMeta"]

log = structlog.get_logger(__name__)

# Bookkeeping bytes beside a vector's row and strings: the VectorMeta object and its two
# floats (~145 B), its slots in `metas`, `rows` and the index's LRU, allocator rounding
# (~210 B); measured by RSS.
META_OVERHEAD_BYTES = 360
# A partition's fixed cost: the object, its dicts and lists, the matrix's header (and faiss
# index past `_NUMPY_ROWS`), its namespace and tenant strings (shared by its metadata), its
# dict slot.
PARTITION_OVERHEAD_BYTES = 1_200
VECTOR_ITEM_BYTES = 2  # float16 rows
# Matrices up to this many rows are plain numpy (searched by upcasting: no faiss object to
# pay for in the many partitions of one vector); larger ones live in a faiss index.
_NUMPY_ROWS = 64
_INDEX_OBJECT_BYTES = 400  # a faiss flat index and its Python proxy, measured by RSS
HNSW_LINKS = 32
RESCORE_CANDIDATES = 16  # graph candidates re-scored exactly from the float16 rows
# Candidates a graph search keeps: 96 rather than faiss's 64 wins back, at ~0.07 ms, the
# top-1 that coarse codes cost on far neighbours (98.5% -> 99.1% on 1,000 held-out Quora
# questions at 50k; near duplicates 100% either way).
EF_SEARCH = 96
TRAIN_ROWS = 4_096  # rows a graph's quantizer learns each dimension's range from
# The graph's codes: 4 bits per dimension. With the re-scoring, its top-1 on MiniLM vectors
# matched 8-bit codes and float32 graphs (docs/benchmarks/scale.md).
_GRAPH_CODE = faiss.ScalarQuantizer.QT_4bit
_GRAPH_CODE_BITS = 4
# Per graph node beside its code: level-0 links (2 x M int32), upper levels, offsets
# and the slack of faiss's growing arrays (~410 B measured by RSS), its label's list slot and
# dict entry (~90 B).
_GRAPH_NODE_BYTES = 2 * HNSW_LINKS * 4 + 250
BUILD_CHUNK_ROWS = 4_096  # rows a build adds between two looks at its cancellation
COLD_TICK = 0  # LRU stamp of refilled vectors nobody asked for yet: older than any use
# One thread builds every graph of the process, one after the other, on faiss's OpenMP
# threads less one core, so the event loop keeps a core while a build runs; builds of a
# cleared or replaced index are cancelled, never waited for.
_BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="l1-graph")
BUILD_THREADS = max(1, len(os.sched_getaffinity(0)) - 1)
# Replaced graphs are freed on their own thread, which then hands the freed pages back to
# the OS: glibc keeps them in its arenas otherwise, and RSS would hold a dead graph per
# partition beside the live one (uncounted).
_RELEASER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="l1-release")
try:
    _malloc_trim: Callable[[int], int] | None = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


@dataclass(frozen=True, slots=True)
class VectorMeta:
    """What the tier keeps beside each vector (`prompt` None: read it from the entry).
    Namespace and tenant are interned: one string each for all the vectors that share them."""

    entry_id: str
    namespace: str
    tenant: str
    prompt: str | None
    created_at: float
    expires_at: float
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespace", sys.intern(self.namespace))
        object.__setattr__(self, "tenant", sys.intern(self.tenant))

    @property
    def size_bytes(self) -> int:
        """Bytes this metadata holds (its own strings plus the per-vector bookkeeping; the
        shared namespace and tenant are in the partition's fixed cost)."""
        strings = (self.entry_id, self.prompt, *self.tags)
        return META_OVERHEAD_BYTES + sum(sys.getsizeof(text) for text in strings if text)

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


def _release(doomed: list[object]) -> None:
    """Free what `doomed` alone holds (a replaced graph, a finished build and its snapshot)
    on the releasing thread, then trim the allocator's arenas."""

    def free() -> None:
        doomed.clear()  # the last references: freed here, off the request path
        if _malloc_trim is not None:
            _malloc_trim(0)

    _RELEASER.submit(free)


Rows = npt.NDArray[np.float16]


def _as_query(vector: Vector) -> Vector:
    """One float32 query row, as faiss takes it."""
    return np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)


class _Matrix:
    """`capacity` float16 rows of `dim`: plain numpy up to `_NUMPY_ROWS` rows, else the storage
    of a faiss flat scalar-quantizer index (`rows` views it: written in place by numpy, searched
    exactly by faiss with float32 accumulation)."""

    __slots__ = ("index", "rows")

    def __init__(self, capacity: int, dim: int) -> None:
        self.index: faiss.IndexScalarQuantizer | None = None
        if capacity <= _NUMPY_ROWS:
            self.rows: Rows = np.zeros((capacity, dim), dtype=np.float16)
            return
        index = faiss.IndexScalarQuantizer(
            dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        size = capacity * index.code_size
        index.codes.resize(size)  # zero-filled, owned by the index
        codes = faiss.rev_swig_ptr(index.codes.data(), size)
        self.rows = codes.view(np.float16).reshape(capacity, dim)
        self.index = index

    @classmethod
    def of(cls, rows: Rows) -> _Matrix:
        """A matrix holding a copy of `rows`."""
        matrix = cls(len(rows), rows.shape[1])
        matrix.rows[:] = rows
        return matrix

    @property
    def capacity(self) -> int:
        return int(self.rows.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.rows.nbytes) + (0 if self.index is None else _INDEX_OBJECT_BYTES)

    def resized(self, capacity: int, count: int) -> _Matrix:
        """A matrix of `capacity` rows holding a copy of the first `count`."""
        resized = _Matrix(capacity, self.rows.shape[1])
        resized.rows[:count] = self.rows[:count]
        return resized

    def scores(self, count: int, query: Vector) -> Vector:
        """Exact similarities of `query` to the first `count` rows (numpy matrices only)."""
        return self.rows[:count].astype(np.float32) @ query

    def top(self, count: int, query: Vector, k: int) -> list[tuple[int, float]]:
        """The `k` rows among the first `count` most similar to `query`, best first."""
        if self.index is None:
            return _top(self.scores(count, query), np.arange(count), k)
        self.index.ntotal = count
        faiss.omp_set_num_threads(1)  # one query: threads only add wake-ups (costly if loaded)
        scores, rows = self.index.search(_as_query(query), min(k, count))
        return [(int(r), float(s)) for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]

    def above(self, count: int, query: Vector, min_similarity: float) -> list[tuple[int, float]]:
        """Every row among the first `count` whose similarity to `query` is ≥ `min_similarity`."""
        if self.index is None:
            scores = self.scores(count, query)
            return [(int(r), float(scores[r])) for r in np.flatnonzero(scores >= min_similarity)]
        self.index.ntotal = count
        faiss.omp_set_num_threads(1)
        # faiss keeps similarities strictly above the radius: step just below the bound.
        radius = float(np.nextafter(np.float32(min_similarity), np.float32(-np.inf)))
        _, scores, rows = self.index.range_search(_as_query(query), radius)
        return [(int(r), float(s)) for s, r in zip(scores, rows, strict=True)]


@dataclass(slots=True)
class _Graph:
    """A faiss HNSW graph over 4-bit codes and which entry each of its labels stands for."""

    index: faiss.IndexHNSWSQ
    labels: list[str | None]  # graph label -> entry id (None: deleted)
    label_of: dict[str, int]


def _build_graph(matrix: _Matrix, ids: list[str], cancelled: Event) -> _Graph | None:
    """Build a graph over the first rows of `matrix` (one per id; holding the matrix keeps
    its faiss storage alive) on a worker thread; None if cancelled. Its quantizer learns each
    dimension's range from an even sample of rows."""
    faiss.omp_set_num_threads(BUILD_THREADS)  # this thread's OpenMP setting only
    source = matrix.rows[: len(ids)]
    dim = source.shape[1]
    # faiss's stubs type the quantizer kind as the ScalarQuantizer class, not its int enum.
    index = faiss.IndexHNSWSQ(dim, _GRAPH_CODE, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)  # type: ignore[arg-type]
    index.hnsw.efSearch = EF_SEARCH
    step = max(1, len(ids) // TRAIN_ROWS)
    index.train(source[: len(ids) : step].astype(np.float32))
    for start in range(0, len(ids), BUILD_CHUNK_ROWS):
        if cancelled.is_set():
            return None
        index.add(source[start : start + BUILD_CHUNK_ROWS].astype(np.float32))
    return _Graph(index, list(ids), {entry_id: label for label, entry_id in enumerate(ids)})


class _Build:
    """A graph being built from the first `count` rows of `source` (the partition's matrix
    when the build started, never written in place while the build reads it)."""

    def __init__(self, source: _Matrix, ids: list[str]) -> None:
        self.source = source
        self.count = len(ids)
        self.added: set[str] = set()  # ids added since the snapshot (the next tail)
        self.removed: set[str] = set()  # ids of the snapshot removed or replaced since
        self.cancelled = Event()
        self.future: Future[_Graph | None] = _BUILDER.submit(
            _build_graph, source, ids, self.cancelled
        )


class _Partition:
    __slots__ = (
        "build",
        "dim",
        "graph",
        "key",
        "meta_bytes",
        "metas",
        "rows",
        "tail",
        "ticks",
        "vectors",
    )

    def __init__(self, key: str, dim: int) -> None:
        self.key = key
        self.dim = dim
        self.vectors = _Matrix(1, dim)
        self.ticks = np.zeros(1, dtype=np.int64)  # row -> LRU stamp (moves with the row)
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
        """Bytes one row costs in a graph (its code and its links)."""
        return (self.dim * _GRAPH_CODE_BITS + 7) // 8 + _GRAPH_NODE_BYTES

    @property
    def nbytes(self) -> int:
        """Bytes held: matrix capacity, metadata, graphs (built and being built), fixed cost."""
        graph_rows = 0 if self.graph is None else len(self.graph.labels)
        held = PARTITION_OVERHEAD_BYTES + self.vectors.nbytes + self.ticks.nbytes + self.meta_bytes
        if self.build is not None:
            graph_rows += self.build.count
            if self.build.source is not self.vectors:  # a snapshot the build still reads
                held += self.build.source.nbytes
        return held + graph_rows * self.node_bytes

    def growth(self, meta: VectorMeta, hnsw_min: int) -> int:
        """Bytes that adding one more row of `meta` would charge at most."""
        count = len(self.metas)
        size = meta.size_bytes
        if count == self.vectors.capacity:
            size += self.vectors.rows.nbytes + self.ticks.nbytes + _INDEX_OBJECT_BYTES  # doubles
        if count + 1 == hnsw_min:
            size += hnsw_min * self.node_bytes  # its first graph
        elif count + 1 > hnsw_min:
            size += self.node_bytes
        return size

    def _writable(self, row: int) -> None:
        """Copy the matrix before writing `row` in place if a build still reads that row."""
        build = self.build
        if build is not None and build.source is self.vectors and row < build.count:
            self.vectors = self.vectors.resized(self.vectors.capacity, len(self.metas))

    def _resize(self, capacity: int) -> None:
        count = len(self.metas)
        self.vectors = self.vectors.resized(capacity, count)
        ticks = np.zeros(capacity, dtype=np.int64)
        ticks[:count] = self.ticks[:count]
        self.ticks = ticks

    def tick_of(self, entry_id: str) -> int:
        return int(self.ticks[self.rows[entry_id]])

    def touch(self, entry_id: str, tick: int) -> None:
        self.ticks[self.rows[entry_id]] = tick

    def add(self, vector: Vector, meta: VectorMeta, tick: int) -> None:
        if meta.entry_id in self.rows:
            self.remove(meta.entry_id)
        row = len(self.metas)
        if row == self.vectors.capacity:
            self._resize(row * 2)
        self._writable(row)
        self.vectors.rows[row] = vector
        self.ticks[row] = tick
        self.metas.append(meta)
        self.meta_bytes += meta.size_bytes
        self.rows[meta.entry_id] = row
        if self.build is not None:
            self.build.added.add(meta.entry_id)
            self.tail.add(meta.entry_id)
        elif self.graph is not None:
            faiss.omp_set_num_threads(1)  # one vector: threads only add wake-ups
            self.graph.index.add(_as_query(vector))
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
            self.vectors.rows[row] = self.vectors.rows[last]
            self.ticks[row] = self.ticks[last]
            self.metas[row] = self.metas[last]
            self.rows[self.metas[row].entry_id] = row
        self.metas.pop()
        if 0 < last <= self.vectors.capacity // 4:  # `last` rows remain
            self._resize(self.vectors.capacity // 2)
        self.tail.discard(entry_id)
        if self.graph is not None:
            label = self.graph.label_of.pop(entry_id, None)
            if label is not None:
                self.graph.labels[label] = None
        if self.build is not None:
            if entry_id in self.build.added:  # added since the snapshot: the build lacks it
                self.build.added.discard(entry_id)
            else:  # the ids of evicted rows stay bounded by the snapshot, however long it runs
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
            self.tail = build.added
            _release([self.graph, build])
            del build  # the releasing thread holds the last references
            self.graph = graph
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
            return self.vectors.top(count, query, k)
        tombstones = len(graph.labels) - len(graph.label_of)
        wanted = max(k, RESCORE_CANDIDATES)
        faiss.omp_set_num_threads(1)
        _, labels = graph.index.search(_as_query(query), wanted + min(tombstones, 64))
        ids = (graph.labels[label] for label in labels[0] if label >= 0)
        found = [self.rows[entry_id] for entry_id in ids if entry_id is not None][:wanted]
        found += (self.rows[entry_id] for entry_id in self.tail)
        rows = np.fromiter(found, np.int64, len(found))
        if len(rows) > _NUMPY_ROWS:  # a long tail: faiss's exact search over a copy
            return [
                (int(rows[r]), s)
                for r, s in _Matrix.of(self.vectors.rows[rows]).top(len(rows), query, k)
            ]
        # Re-scored exactly: the graph ranks by 8-bit codes, the answer is the float16 cosine.
        return _top(self.vectors.rows[rows].astype(np.float32) @ query, rows, k)


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
        self._lru: OrderedDict[str, _Partition] = OrderedDict()  # id -> its partition
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
        self._lru[meta.entry_id] = self._insert(partition, vector, meta, self.budget.tick())
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
                PARTITION_OVERHEAD_BYTES + self.dim * VECTOR_ITEM_BYTES + 8 + meta.size_bytes
                if part is None
                else part.growth(meta, self.hnsw_min_partition)
            )
            if self.budget.used_bytes + growth > self.budget.max_bytes:
                return False
            self._lru[meta.entry_id] = self._insert(partition, vector, meta, COLD_TICK)
            self._lru.move_to_end(meta.entry_id, last=False)
        return True

    def _insert(self, partition: str, vector: Vector, meta: VectorMeta, tick: int) -> _Partition:
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition(partition, self.dim)
            before = 0
        else:
            before = part.nbytes
        part.add(vector, meta, tick)
        part.maintain(self.hnsw_min_partition)
        self._charge(part.nbytes - before)
        return part

    def oldest_tick(self) -> int | None:
        """The tick of the least recently used vector (for the shared budget)."""
        for entry_id, part in self._lru.items():
            return part.tick_of(entry_id)
        return None

    def evict_oldest(self) -> None:
        """Evict the least recently used vector (called by the shared budget)."""
        entry_id, part = self._lru.popitem(last=False)
        self._drop(part, entry_id)
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
            part.touch(best, self.budget.tick())
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
            for row, score in part.vectors.above(len(part), query, min_similarity):
                meta = part.metas[row]
                if predicate(meta):
                    found.append(SemanticCandidate(meta=meta, similarity=score))
        return found

    def remove(self, entry_id: str) -> None:
        """Drop one vector if present."""
        part = self._lru.pop(entry_id, None)
        if part is not None:
            self._drop(part, entry_id)

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

    def _drop(self, part: _Partition, entry_id: str) -> None:
        before = part.nbytes
        part.remove(entry_id)
        if len(part) == 0:
            part.cancel_build()
            del self._partitions[part.key]
            self._charge(-before)
        else:
            self._charge(part.nbytes - before)
