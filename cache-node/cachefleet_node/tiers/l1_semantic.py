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

A partition of one vector (the common case: a context of its own) has no matrix or lists of its
own: its row lives in the index's shared `_Slab` (blocks of rows, records and lists beside),
and the partition is only that row's number; its second row moves it into a `_Partition`,
whose matrix starts at two rows and grows (doubling while small, then by a quarter) and
shrinks geometrically; its last row moves back. Metadata is columnar: a record per row (LRU
stamp, times, facet, graph label) beside the vectors, ids and prompts in lists, namespace/
tenant/tags interned per index (`_Facets`), one id -> row map for all partitions and the
slab; `VectorMeta` objects are made only for results. Every byte a partition
holds (matrix capacity, metadata, its graph and the one being built) is charged to the
shared `MemoryBudget`, which evicts the least recently used items across the in-process
tiers; an optional bound on the number of vectors applies too.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from threading import Event
from typing import TypeVar

import faiss
import numpy as np
import numpy.typing as npt
import structlog

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.memory import MemoryBudget
from cachefleet_node.tiers.vector_tier import Vector, VectorHit, VectorQuery

__all__ = ["SemanticCandidate", "SemanticIndex", "VectorMeta"]

T = TypeVar("T")

log = structlog.get_logger(__name__)

# What a row keeps beside its vector, in one numpy record per row: its LRU stamp, creation and
# expiry times, the number of its facet (namespace, tenant, tags: `_Facets`) and its graph label.
_COLUMNS = np.dtype(
    [
        ("tick", np.int64),
        ("created", np.float64),
        ("expires", np.float64),
        ("facet", np.int32),
        ("label", np.int32),  # its node in the partition's graph (-1: none, in the tail)
    ]
)
_Record = tuple[int, float, float, int, int]  # a row of `_COLUMNS`, as Python values
# Bookkeeping bytes per row beside its vector, record and strings: its slots in the
# partition's `ids` and `prompts` lists, its entries in the index's row map (and its row
# number) and LRU, allocator rounding; measured by RSS.
ROW_OVERHEAD_BYTES = 200
# A partition's fixed cost: the object, its lists, the headers of its matrix and records (and
# faiss index past `_NUMPY_ROWS`), its key and dict slot.
PARTITION_OVERHEAD_BYTES = 800
# A facet's fixed cost: its tuple, dict entry, list slots; its strings are counted beside.
FACET_OVERHEAD_BYTES = 250
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
# and the slack of faiss's growing arrays (~410 B measured by RSS), its label's row (4 B).
_GRAPH_NODE_BYTES = 2 * HNSW_LINKS * 4 + 160
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
    """What the tier keeps beside each vector (`prompt` None: read it from the entry); the
    tier stores it in columns and hands out a fresh one per result. Namespace and tenant are
    interned: one string each for all the vectors that share them."""

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
        """Bytes the tier holds for this metadata beside the vector's record: its id and
        prompt strings and the row's bookkeeping (its facet is counted once, by `_Facets`)."""
        prompt = 0 if self.prompt is None else sys.getsizeof(self.prompt)
        return ROW_OVERHEAD_BYTES + sys.getsizeof(self.entry_id) + prompt

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


def _grown(capacity: int) -> int:
    """The capacity a full array of `capacity` rows grows to: doubled while small, by a
    quarter past `_NUMPY_ROWS` (at most a fifth of a large matrix is ever unused)."""
    return max(1, capacity * 2 if capacity < _NUMPY_ROWS else capacity + capacity // 4)


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
    """A faiss HNSW graph over 4-bit codes and the partition row each of its labels stands
    for (each row's record names its label back: `_COLUMNS`)."""

    index: faiss.IndexHNSWSQ
    rows: npt.NDArray[np.int32]  # label -> row (-1: deleted), at capacity past `size`
    size: int  # labels given (the graph's nodes)
    live: int  # labels not deleted

    def append(self, row: int) -> int:
        """The label of a node just added for `row`."""
        if self.size == len(self.rows):
            self.rows = np.resize(self.rows, _grown(self.size))
        label = self.size
        self.rows[label] = row
        self.size += 1
        self.live += 1
        return label

    def delete(self, label: int) -> None:
        self.rows[label] = -1
        self.live -= 1


def _build_graph(matrix: _Matrix, count: int, cancelled: Event) -> faiss.IndexHNSWSQ | None:
    """Build a graph over the first `count` rows of `matrix` (holding the matrix keeps its
    faiss storage alive) on a worker thread; None if cancelled. Its quantizer learns each
    dimension's range from an even sample of rows."""
    faiss.omp_set_num_threads(BUILD_THREADS)  # this thread's OpenMP setting only
    source = matrix.rows[:count]
    dim = source.shape[1]
    # faiss's stubs type the quantizer kind as the ScalarQuantizer class, not its int enum.
    index = faiss.IndexHNSWSQ(dim, _GRAPH_CODE, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)  # type: ignore[arg-type]
    index.hnsw.efSearch = EF_SEARCH
    step = max(1, count // TRAIN_ROWS)
    index.train(source[:count:step].astype(np.float32))
    for start in range(0, count, BUILD_CHUNK_ROWS):
        if cancelled.is_set():
            return None
        index.add(source[start : start + BUILD_CHUNK_ROWS].astype(np.float32))
    return index


class _Build:
    """A graph being built from the first `count` rows of `source` (the partition's matrix
    when the build started, never written in place while the build reads it)."""

    def __init__(self, source: _Matrix, ids: list[str]) -> None:
        self.source = source
        self.ids = ids  # label -> id: the snapshot's rows, in order
        self.count = len(ids)
        self.added: set[str] = set()  # ids added since the snapshot (the next tail)
        self.removed: set[str] = set()  # ids of the snapshot removed or replaced since
        self.cancelled = Event()
        self.future: Future[faiss.IndexHNSWSQ | None] = _BUILDER.submit(
            _build_graph, source, self.count, self.cancelled
        )


Facet = tuple[str, str, tuple[str, ...]]  # namespace, tenant, tags


class _Facets:
    """The (namespace, tenant, tags) of the held rows, one number each, shared by all the
    partitions of an index and counted by use: a facet no row holds any more is forgotten."""

    __slots__ = ("free", "nbytes", "numbers", "uses", "values")

    def __init__(self) -> None:
        self.values: list[Facet] = []
        self.uses: list[int] = []
        self.numbers: dict[Facet, int] = {}
        self.free: list[int] = []
        self.nbytes = 0

    def acquire(self, meta: VectorMeta) -> int:
        """The number of `meta`'s facet, counted once more."""
        facet = (meta.namespace, meta.tenant, meta.tags)
        number = self.numbers.get(facet)
        if number is None:
            if self.free:
                number = self.free.pop()
                self.values[number] = facet
            else:
                number = len(self.values)
                self.values.append(facet)
                self.uses.append(0)
            self.numbers[facet] = number
            self.nbytes += _facet_bytes(facet)
        self.uses[number] += 1
        return number

    def release(self, number: int) -> None:
        """Count one use less of facet `number`; forget it at none."""
        self.uses[number] -= 1
        if self.uses[number] == 0:
            facet = self.values[number]
            del self.numbers[facet]
            self.values[number] = _NO_FACET
            self.free.append(number)
            self.nbytes -= _facet_bytes(facet)


_NO_FACET: Facet = ("", "", ())


def _facet_bytes(facet: Facet) -> int:
    namespace, tenant, tags = facet
    strings = sum(sys.getsizeof(text) for text in (namespace, tenant, *tags))
    return FACET_OVERHEAD_BYTES + strings + (sys.getsizeof(tags) if tags else 0)


def _row_meta(entry_id: str, prompt: str | None, record: _Record, facets: _Facets) -> VectorMeta:
    """A row's `VectorMeta` from its id, prompt, record and the index's facets."""
    _, created, expires, facet, _ = record
    namespace, tenant, tags = facets.values[facet]
    return VectorMeta(entry_id, namespace, tenant, prompt, created, expires, tags)


SLAB_BLOCK_ROWS = 256  # rows of one block of the slab (192 KiB of float16 at 384 dimensions)
# A slab row's cost beside its vector, record and `VectorMeta.size_bytes`: its partition's
# entry in the index's partition map, its slot in the slab's key list, allocator rounding
# (the key string is counted apart); measured by RSS.
SLAB_ROW_BYTES = 100


class _Slab:
    """The rows of every partition of one row, in one shared matrix: float16 vectors and their
    records in blocks of `SLAB_BLOCK_ROWS` (added and freed whole, never copied to grow), ids,
    prompts and partition keys in lists (row order, swap-removed together). Such a partition
    is only its row number in the index's partition map: no matrix, records or lists of its
    own. Its second row moves it out into a `_Partition` (`SemanticIndex._promoted`)."""

    __slots__ = (
        "blocks",
        "dim",
        "facets",
        "ids",
        "keys",
        "partitions",
        "prompts",
        "records",
        "rows",
        "text_bytes",
    )

    def __init__(
        self,
        dim: int,
        rows: dict[str, int],
        partitions: dict[str, _Partition | int],
        facets: _Facets,
    ) -> None:
        self.dim = dim
        self.rows = rows  # the index's id -> row map
        self.partitions = partitions  # the index's key -> partition (or slab row) map
        self.facets = facets
        self.blocks: list[Rows] = []
        self.records: list[np.ndarray] = []  # a `_COLUMNS` array beside each block
        self.ids: list[str] = []
        self.prompts: list[str | None] = []
        self.keys: list[str] = []
        self.text_bytes = 0  # the rows' `VectorMeta.size_bytes`, keys and `SLAB_ROW_BYTES`

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def block_bytes(self) -> int:
        """Bytes of one block: its vectors and records."""
        return SLAB_BLOCK_ROWS * (self.dim * VECTOR_ITEM_BYTES + _COLUMNS.itemsize)

    @property
    def capacity(self) -> int:
        return len(self.blocks) * SLAB_BLOCK_ROWS

    @property
    def nbytes(self) -> int:
        """Bytes held: blocks at capacity, strings and bookkeeping."""
        return len(self.blocks) * self.block_bytes + self.text_bytes

    def vector(self, row: int) -> Rows:
        block, at = divmod(row, SLAB_BLOCK_ROWS)
        vector: Rows = self.blocks[block][at]
        return vector

    def record(self, row: int) -> _Record:
        """The record of `row` as Python values."""
        block, at = divmod(row, SLAB_BLOCK_ROWS)
        record: _Record = self.records[block][at].item()
        return record

    def meta(self, row: int) -> VectorMeta:
        """The metadata of `row`."""
        return _row_meta(self.ids[row], self.prompts[row], self.record(row), self.facets)

    def tick_of(self, entry_id: str) -> int:
        block, at = divmod(self.rows[entry_id], SLAB_BLOCK_ROWS)
        return int(self.records[block]["tick"][at])

    def touch(self, entry_id: str, tick: int) -> None:
        block, at = divmod(self.rows[entry_id], SLAB_BLOCK_ROWS)
        self.records[block]["tick"][at] = tick

    def search(self, row: int, query: Vector) -> list[tuple[int, float]]:
        """`row` and its exact similarity to `query` (a partition's one row)."""
        return [(row, float(self.vector(row).astype(np.float32) @ query))]

    def above(self, query: Vector, min_similarity: float) -> list[tuple[int, float]]:
        """Every row whose similarity to `query` is ≥ `min_similarity` (exact)."""
        found = []
        for block, vectors in enumerate(self.blocks):
            start = block * SLAB_BLOCK_ROWS
            count = min(SLAB_BLOCK_ROWS, len(self.ids) - start)
            scores = vectors[:count].astype(np.float32) @ query
            found += [
                (start + int(r), float(scores[r])) for r in np.flatnonzero(scores >= min_similarity)
            ]
        return found

    def add(self, key: str, vector: Vector, meta: VectorMeta, tick: int) -> None:
        """A row for `meta`, the one row of partition `key` (which the index holds nowhere)."""
        self.extend([key], vector.reshape(1, -1), [meta], tick)

    def extend(self, keys: list[str], vectors: Vector, metas: list[VectorMeta], tick: int) -> None:
        """Rows for `metas`, each the one row of its partition in `keys` (which the index holds
        nowhere), all stamped `tick`."""
        start, end = len(self.ids), len(self.ids) + len(metas)
        while self.capacity < end:
            self.blocks.append(np.zeros((SLAB_BLOCK_ROWS, self.dim), dtype=np.float16))
            self.records.append(np.zeros(SLAB_BLOCK_ROWS, dtype=_COLUMNS))
        done = 0
        while done < len(metas):  # block by block
            block, at = divmod(start + done, SLAB_BLOCK_ROWS)
            step = min(SLAB_BLOCK_ROWS - at, len(metas) - done)
            part = metas[done : done + step]
            self.blocks[block][at : at + step] = vectors[done : done + step]
            records = self.records[block][at : at + step]
            records["tick"] = tick
            records["created"] = [meta.created_at for meta in part]
            records["expires"] = [meta.expires_at for meta in part]
            records["facet"] = [self.facets.acquire(meta) for meta in part]
            records["label"] = -1
            done += step
        ids = [meta.entry_id for meta in metas]
        self.ids += ids
        self.prompts += [meta.prompt for meta in metas]
        self.keys += keys
        self.text_bytes += sum(meta.size_bytes for meta in metas) + len(metas) * SLAB_ROW_BYTES
        self.text_bytes += sum(sys.getsizeof(key) for key in keys)
        for entry_id, key, row in zip(ids, keys, range(start, end), strict=True):
            self.rows[entry_id] = self.partitions[key] = row  # one int object for both maps

    def remove(self, entry_id: str) -> None:
        """Drop the row of `entry_id` (which this slab holds) and its partition."""
        row = self.rows.pop(entry_id)
        key, prompt = self.keys[row], self.prompts[row]
        del self.partitions[key]
        self.text_bytes -= (
            ROW_OVERHEAD_BYTES
            + SLAB_ROW_BYTES
            + sys.getsizeof(entry_id)
            + sys.getsizeof(key)
            + (0 if prompt is None else sys.getsizeof(prompt))
        )
        block, at = divmod(row, SLAB_BLOCK_ROWS)
        self.facets.release(int(self.records[block]["facet"][at]))
        last = len(self.ids) - 1
        if row != last:  # swap-remove keeps the slab dense
            end_block, end_at = divmod(last, SLAB_BLOCK_ROWS)
            self.blocks[block][at] = self.blocks[end_block][end_at]
            self.records[block][at] = self.records[end_block][end_at]
            moved = self.ids[row] = self.ids[last]
            self.prompts[row] = self.prompts[last]
            moved_key = self.keys[row] = self.keys[last]
            self.rows[moved] = self.partitions[moved_key] = row
        self.ids.pop()
        self.prompts.pop()
        self.keys.pop()
        # Free a block once it is empty and half of the one before is too (or all are).
        while self.blocks and self.capacity - last >= SLAB_BLOCK_ROWS * (3 if last else 2) // 2:
            self.blocks.pop()
            self.records.pop()


class _Partition:
    """One partition's rows: vectors in a matrix, LRU stamps, times and facets in a record
    array beside it, ids and prompts in two lists (row order, swap-removed together). The
    id -> row map and the facets are the index's, shared by all its partitions."""

    __slots__ = (
        "_tail",
        "build",
        "cols",
        "dim",
        "facets",
        "graph",
        "ids",
        "key",
        "prompts",
        "rows",
        "text_bytes",
        "vectors",
    )

    def __init__(self, key: str, dim: int, rows: dict[str, int], facets: _Facets) -> None:
        self.key = key
        self.dim = dim
        self.rows = rows
        self.facets = facets
        self.vectors = _Matrix(1, dim)
        self.cols = np.zeros(1, dtype=_COLUMNS)  # row -> record (moves with the row)
        self.ids: list[str] = []
        self.prompts: list[str | None] = []
        self.text_bytes = 0  # the rows' `VectorMeta.size_bytes`
        self.graph: _Graph | None = None
        self._tail: set[str] | None = None
        self.build: _Build | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def tail(self) -> set[str]:
        """Live ids the graph lacks (searched exactly); made when first used (by a build)."""
        if self._tail is None:
            self._tail = set()
        return self._tail

    @property
    def node_bytes(self) -> int:
        """Bytes one row costs in a graph (its code and its links)."""
        return (self.dim * _GRAPH_CODE_BITS + 7) // 8 + _GRAPH_NODE_BYTES

    @property
    def nbytes(self) -> int:
        """Bytes held: matrix and records at capacity, strings and bookkeeping, graphs (built
        and being built), fixed cost."""
        graph_rows = 0 if self.graph is None else self.graph.size
        held = PARTITION_OVERHEAD_BYTES + self.vectors.nbytes + self.cols.nbytes + self.text_bytes
        if self.build is not None:
            graph_rows += self.build.count
            if self.build.source is not self.vectors:  # a snapshot the build still reads
                held += self.build.source.nbytes
        return held + graph_rows * self.node_bytes

    def record(self, row: int) -> _Record:
        """The record of `row` as Python values."""
        record: _Record = self.cols[row].item()
        return record

    def meta(self, row: int) -> VectorMeta:
        """The metadata of `row`."""
        return _row_meta(self.ids[row], self.prompts[row], self.record(row), self.facets)

    def _writable(self, row: int) -> None:
        """Copy the matrix before writing `row` in place if a build still reads that row."""
        build = self.build
        if build is not None and build.source is self.vectors and row < build.count:
            self.vectors = self.vectors.resized(self.vectors.capacity, len(self.ids))

    def _resize(self, capacity: int) -> None:
        count = len(self.ids)
        self.vectors = self.vectors.resized(capacity, count)
        cols = np.zeros(capacity, dtype=_COLUMNS)
        cols[:count] = self.cols[:count]
        self.cols = cols

    def above(self, query: Vector, min_similarity: float) -> list[tuple[int, float]]:
        """Every row whose similarity to `query` is ≥ `min_similarity` (exact)."""
        return self.vectors.above(len(self.ids), query, min_similarity)

    def tick_of(self, entry_id: str) -> int:
        return int(self.cols["tick"][self.rows[entry_id]])

    def touch(self, entry_id: str, tick: int) -> None:
        self.cols["tick"][self.rows[entry_id]] = tick

    def add(self, vector: Vector, meta: VectorMeta, tick: int) -> None:
        """Append a row for `meta` (whose id the index holds nowhere)."""
        row = len(self.ids)
        if row == self.vectors.capacity:
            self._resize(_grown(row))
        self._writable(row)
        self.vectors.rows[row] = vector
        self.cols[row] = (tick, meta.created_at, meta.expires_at, self.facets.acquire(meta), -1)
        self.ids.append(meta.entry_id)
        self.prompts.append(meta.prompt)
        self.text_bytes += meta.size_bytes
        self.rows[meta.entry_id] = row
        if self.build is not None:
            self.build.added.add(meta.entry_id)
            self.tail.add(meta.entry_id)
        elif self.graph is not None:
            faiss.omp_set_num_threads(1)  # one vector: threads only add wake-ups
            self.graph.index.add(_as_query(vector))
            self.cols["label"][row] = self.graph.append(row)

    def extend(self, vectors: Vector, metas: list[VectorMeta]) -> None:
        """Append rows of ids not held, least recently used of all (`COLD_TICK`); they join
        the tail (searched exactly) wherever a graph exists or is being built, so no graph
        is grown on the caller's thread."""
        row, end = len(self.ids), len(self.ids) + len(metas)
        if end > self.vectors.capacity:
            capacity = self.vectors.capacity
            while capacity < end:
                capacity = _grown(capacity)
            self._resize(capacity)
        self._writable(row)
        self.vectors.rows[row:end] = vectors
        cols = self.cols[row:end]
        cols["tick"] = COLD_TICK
        cols["created"] = [meta.created_at for meta in metas]
        cols["expires"] = [meta.expires_at for meta in metas]
        cols["facet"] = [self.facets.acquire(meta) for meta in metas]
        cols["label"] = -1
        ids = [meta.entry_id for meta in metas]
        self.ids.extend(ids)
        self.prompts.extend(meta.prompt for meta in metas)
        self.text_bytes += sum(meta.size_bytes for meta in metas)
        self.rows.update(zip(ids, range(row, end), strict=True))
        if self.build is not None:
            self.build.added.update(ids)
        if self.build is not None or self.graph is not None:
            self.tail.update(ids)

    def remove(self, entry_id: str) -> None:
        """Drop the row of `entry_id` (which this partition holds)."""
        row = self.rows.pop(entry_id)
        prompt = self.prompts[row]
        self.text_bytes -= (
            ROW_OVERHEAD_BYTES
            + sys.getsizeof(entry_id)
            + (0 if prompt is None else sys.getsizeof(prompt))
        )
        self.facets.release(int(self.cols["facet"][row]))
        graph = self.graph
        if graph is not None and (label := int(self.cols["label"][row])) >= 0:
            graph.delete(label)
        last = len(self.ids) - 1
        if row != last:  # swap-remove keeps the matrix dense
            self._writable(row)
            self.vectors.rows[row] = self.vectors.rows[last]
            self.cols[row] = self.cols[last]
            moved = self.ids[row] = self.ids[last]
            self.prompts[row] = self.prompts[last]
            self.rows[moved] = row
            if graph is not None and (label := int(self.cols["label"][row])) >= 0:
                graph.rows[label] = row
        self.ids.pop()
        self.prompts.pop()
        if 0 < last <= self.vectors.capacity // 4:  # `last` rows remain
            self._resize(self.vectors.capacity // 2)
        if self._tail:
            self._tail.discard(entry_id)
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
        count = len(self.ids)
        if count < hnsw_min:
            self.cancel_build()
            self.graph = None
            self._tail = None
            return
        build = self.build
        if build is not None:
            if not build.future.done():
                return
            self.build = None
            if (failure := build.future.exception()) is not None:
                log.warning("l1_graph_build_failed", rows=build.count, error=repr(failure))
                return  # the next use of the partition starts another
            index = build.future.result()
            assert index is not None  # only a cancelled build returns None (and is dropped)
            # Label i is the snapshot's row i: find where its id is now (-1: removed or
            # replaced since, the replacement being in the tail), and label the rows back.
            removed, rows = build.removed, self.rows
            label_rows = np.fromiter(
                (-1 if entry_id in removed else rows.get(entry_id, -1) for entry_id in build.ids),
                np.int32,
                build.count,
            )
            labelled = np.flatnonzero(label_rows >= 0)
            labels = self.cols["label"]
            labels[:] = -1
            labels[label_rows[labelled]] = labelled
            self._tail = build.added
            _release([self.graph, build])
            del build  # the releasing thread holds the last references
            self.graph = _Graph(index, label_rows, len(label_rows), len(labelled))
        stale = 0 if self.graph is None else self.graph.size - self.graph.live
        # Rebuild at the tail size that sends searches back to exact (`search`): a partition
        # is never left on exact search with no build under way.
        if self.graph is None or stale + len(self.tail) > count // 8:
            self.build = _Build(self.vectors, list(self.ids))

    def search(self, query: Vector, k: int) -> list[tuple[int, float]]:
        count = len(self.ids)
        if count == 0:
            return []
        graph = self.graph
        if graph is None or len(self.tail) > count // 8:  # exact beats a graph + a big tail
            return self.vectors.top(count, query, k)
        tombstones = graph.size - graph.live
        wanted = max(k, RESCORE_CANDIDATES)
        faiss.omp_set_num_threads(1)
        _, labels = graph.index.search(_as_query(query), wanted + min(tombstones, 64))
        found = graph.rows[labels[0][labels[0] >= 0]]
        rows = found[found >= 0][:wanted].astype(np.int64)
        if self.tail:
            tail = np.fromiter((self.rows[entry_id] for entry_id in self.tail), np.int64)
            rows = np.concatenate([rows, tail])
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


Holder = _Partition | _Slab  # where a row lives


class SemanticIndex:
    """Partitioned vector index, charged to a budget (and bounded to `max_entries` vectors
    unless that is None); graphs are built in the background. A partition of one row is a
    row of the shared `_Slab`; its second row gives it a `_Partition` of its own."""

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
        # key -> its partition, or its row in the slab (a partition of one row)
        self._partitions: dict[str, _Partition | int] = {}
        self._lru: OrderedDict[str, Holder] = OrderedDict()  # id -> its partition or the slab
        self._rows: dict[str, int] = {}  # id -> its row in its partition (or the slab)
        self._facets = _Facets()
        self._slab = _Slab(dim, self._rows, self._partitions, self._facets)
        self._bytes = 0  # the partitions' and the slab's (the facets count theirs)
        self.evictions = 0
        self.generation = 0  # counts `clear`s: a refill that sees it change starts again
        budget.register(self)

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def bytes_used(self) -> int:
        """Bytes this tier holds (matrices at capacity, metadata, graphs, bookkeeping)."""
        return self._bytes + self._facets.nbytes

    @property
    def building(self) -> int:
        """Partitions whose graph is being built (or built and not yet swapped in)."""
        return sum(
            isinstance(part, _Partition) and part.build is not None
            for part in self._partitions.values()
        )

    def add(self, partition: str, vector: Vector, meta: VectorMeta) -> None:
        """Insert (or replace) one vector; evict the least recently used past the bounds."""
        if self.max_entries == 0:
            return
        self.remove(meta.entry_id)
        self._lru[meta.entry_id] = self._insert(partition, vector, meta, self.budget.tick())
        while self.max_entries is not None and len(self._lru) > self.max_entries:
            self.evict_oldest()
        self.budget.reclaim()

    def add_cold(
        self, partitions: Sequence[str], vectors: Vector, metas: Sequence[VectorMeta]
    ) -> bool:
        """Insert vectors nobody has asked for yet (a refill; row i of `vectors` has
        `metas[i]`, in `partitions[i]`) as the least recently used of all, so that the budget
        evicts them before anything in use; the later of two rows is the colder. Ids already
        held (or repeated) stay as they were. Evicts nothing for them: returns False, having
        added the rows before the first that does not fit, once the bound or the budget is
        reached."""
        if self.max_entries == 0:
            return False
        room = None if self.max_entries is None else self.max_entries - len(self._lru)
        headroom = self.budget.max_bytes - self.budget.used_bytes
        shapes: dict[str, list[int]] = {}  # partition -> [rows, capacity] once these are in
        slab_room = [self._slab.capacity - len(self._slab)]
        by_partition: dict[str, list[int]] = {}  # partition -> rows of `metas` to add, in order
        taken: list[int] = []
        seen: set[str] = set()
        full = False
        for i, meta in enumerate(metas):
            if meta.entry_id in self._lru or meta.entry_id in seen:
                continue
            key = partitions[i]
            if (shape := shapes.get(key)) is None:
                shape = shapes[key] = self._shape(key)
            growth = self._growth(key, shape, meta, slab_room)
            if growth > headroom or (room is not None and len(taken) >= room):
                full = True
                break
            headroom -= growth
            seen.add(meta.entry_id)
            taken.append(i)
            by_partition.setdefault(key, []).append(i)
        single_keys: list[str] = []  # new partitions of one row: into the slab
        singles: list[int] = []
        for key, rows in by_partition.items():
            held = self._partitions.get(key)
            if held is None and len(rows) == 1:
                single_keys.append(key)
                singles.append(rows[0])
                continue
            if held is None:
                part = self._partitions[key] = _Partition(key, self.dim, self._rows, self._facets)
                before = 0
            else:  # a slab row's partition is charged as it moves out
                part = self._promoted(key, held) if isinstance(held, int) else held
                before = part.nbytes
            part.extend(vectors[rows], [metas[i] for i in rows])
            part.maintain(self.hnsw_min_partition)
            self._charge(part.nbytes - before)
        if singles:
            before = self._slab.nbytes
            self._slab.extend(single_keys, vectors[singles], [metas[i] for i in singles], COLD_TICK)
            self._charge(self._slab.nbytes - before)
        lru = self._lru
        for i in taken:  # each one colder than the one before
            entry_id = metas[i].entry_id
            held = self._partitions[partitions[i]]
            lru[entry_id] = self._slab if isinstance(held, int) else held
            lru.move_to_end(entry_id, last=False)
        return not full

    def _shape(self, key: str) -> list[int]:
        """[rows, capacity] of partition `key` (a slab row: [1, 0])."""
        held = self._partitions.get(key)
        if held is None:
            return [0, 0]
        if isinstance(held, int):
            return [1, 0]
        return [len(held), held.vectors.capacity]

    def _growth(self, key: str, shape: list[int], meta: VectorMeta, slab_room: list[int]) -> int:
        """Bytes one more row of `meta` charges at most to partition `key` of `shape` (rows,
        capacity; updated to include it), with `slab_room` free rows in the slab (updated)."""
        count, capacity = shape
        size = meta.size_bytes
        if (facet := (meta.namespace, meta.tenant, meta.tags)) not in self._facets.numbers:
            size += _facet_bytes(facet)
        row_bytes = self.dim * VECTOR_ITEM_BYTES + _COLUMNS.itemsize
        if count == 0:  # a slab row
            size += SLAB_ROW_BYTES + sys.getsizeof(key)
            if slab_room[0] == 0:
                size += self._slab.block_bytes
                slab_room[0] = SLAB_BLOCK_ROWS
            slab_room[0] -= 1
        elif capacity == 0:  # out of the slab into a partition of two rows
            size += PARTITION_OVERHEAD_BYTES + 2 * row_bytes
            capacity = 2
        elif count == capacity:  # the matrix grows
            grown = _grown(capacity)
            size += (grown - capacity) * row_bytes + _INDEX_OBJECT_BYTES
            capacity = grown
        node_bytes = (self.dim * _GRAPH_CODE_BITS + 7) // 8 + _GRAPH_NODE_BYTES
        if count + 1 == self.hnsw_min_partition:
            size += self.hnsw_min_partition * node_bytes  # its first graph
        elif count + 1 > self.hnsw_min_partition:
            size += node_bytes
        shape[0], shape[1] = count + 1, capacity
        return size

    def _insert(self, partition: str, vector: Vector, meta: VectorMeta, tick: int) -> Holder:
        held = self._partitions.get(partition)
        if held is None:
            before = self._slab.nbytes
            self._slab.add(partition, vector, meta, tick)
            self._charge(self._slab.nbytes - before)
            return self._slab
        part = self._promoted(partition, held) if isinstance(held, int) else held
        before = part.nbytes
        part.add(vector, meta, tick)
        part.maintain(self.hnsw_min_partition)
        self._charge(part.nbytes - before)
        return part

    def _promoted(self, key: str, row: int) -> _Partition:
        """Partition `key`'s own `_Partition`, its one row moved into it out of the slab (its
        LRU stamp and place kept)."""
        slab = self._slab
        entry_id, vector, meta = slab.ids[row], slab.vector(row).astype(np.float32), slab.meta(row)
        tick = slab.record(row)[0]
        before = slab.nbytes
        slab.remove(entry_id)
        part = _Partition(key, self.dim, self._rows, self._facets)
        part.add(vector, meta, tick)
        self._partitions[key] = self._lru[entry_id] = part
        self._charge(slab.nbytes - before + part.nbytes)
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
        return self._found(
            partition,
            query,
            k,
            now,
            max_age_s,
            lambda part, row, score, _: SemanticCandidate(meta=part.meta(row), similarity=score),
        )

    async def nearest(self, query: VectorQuery) -> list[VectorHit]:
        """`search` as a `VectorTier`: the candidates carry their prompts where the tier
        keeps them (refilled vectors do not), never their vectors."""

        def hit(part: Holder, row: int, score: float, record: _Record) -> VectorHit:
            _, created, _, facet, _ = record
            namespace, tenant, tags = part.facets.values[facet]
            return VectorHit(
                entry_id=part.ids[row],
                namespace=namespace,
                tenant=tenant,
                partition=query.partition,
                similarity=score,
                created_at=created,
                vector=None,
                tags=tags,
                prompt=part.prompts[row],
            )

        return self._found(
            query.partition, query.vector, query.limit, query.now, query.max_age_s, hit
        )

    def _found(
        self,
        partition: str,
        query: Vector,
        k: int,
        now: float,
        max_age_s: float | None,
        result: Callable[[Holder, int, float, _Record], T],
    ) -> list[T]:
        """`result` of each of up to `k` fresh neighbours (partition or slab, row, similarity,
        its record), most similar first; the expired ones met are removed (after `result`
        read the rows), the best one is used."""
        held = self._partitions.get(partition)
        if held is None:
            return []
        part: Holder
        if isinstance(held, int):
            part, found = self._slab, self._slab.search(held, query)
        else:
            part = held
            before = part.nbytes  # a finished build swaps in, a due one starts
            part.maintain(self.hnsw_min_partition)
            self._charge(part.nbytes - before)
            found = part.search(query, k)
        results = []
        best = None
        expired = []
        for row, score in found:
            record = part.record(row)
            _, created, expires, _, _ = record
            if now >= expires:
                expired.append(part.ids[row])
                continue
            if max_age_s is not None and now - created > max_age_s:
                continue
            if best is None:
                best = part.ids[row]
            results.append(result(part, row, score, record))
        for entry_id in expired:
            self.remove(entry_id)
        if best is not None and (holder := self._lru.get(best)) is not None:
            holder.touch(best, self.budget.tick())  # a removal may have moved it to the slab
            self._lru.move_to_end(best)
        return results

    def similar_where(
        self, query: Vector, min_similarity: float, predicate: Callable[[VectorMeta], bool]
    ) -> list[SemanticCandidate]:
        """Every vector, in any partition, whose metadata matches and whose similarity to
        `query` is at least `min_similarity` (exact; for targeted invalidation)."""
        found = []
        for holder in self._holders():
            for row, score in holder.above(query, min_similarity):
                meta = holder.meta(row)
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
            holder.ids[row]
            for holder in self._holders()
            for row in range(len(holder))
            if predicate(holder.meta(row))
        ]
        for entry_id in doomed:
            self.remove(entry_id)
        return len(doomed)

    def clear(self) -> None:
        """Drop everything (builds under way included)."""
        for part in self._partitions.values():
            if isinstance(part, _Partition):
                part.cancel_build()
        self._partitions.clear()
        self._lru.clear()
        self._rows.clear()
        self._facets = _Facets()
        self._slab = _Slab(self.dim, self._rows, self._partitions, self._facets)
        self._charge(-self._bytes)
        self.generation += 1

    def close(self) -> None:
        """Drop everything (cancelling builds) and leave the budget (an index replaced or
        shut down; a lookup still holding it finds it empty)."""
        self.clear()
        self.budget.unregister(self)

    def _holders(self) -> list[Holder]:
        """The partitions of more than one row, then the slab (the others)."""
        parts: list[Holder] = [p for p in self._partitions.values() if isinstance(p, _Partition)]
        return [*parts, self._slab]

    def _charge(self, size: int) -> None:
        self._bytes += size

    def _drop(self, part: Holder, entry_id: str) -> None:
        before = part.nbytes
        part.remove(entry_id)  # the slab drops the row's partition with it
        self._charge(part.nbytes - before)
        if isinstance(part, _Partition) and len(part) <= 1:
            self._dissolve(part)

    def _dissolve(self, part: _Partition) -> None:
        """Drop a partition left with one row or none; its one row goes back to the slab
        (its LRU stamp and place kept)."""
        held = part.nbytes  # what it is charged: a build under way included
        part.cancel_build()
        del self._partitions[part.key]
        if len(part) == 1:
            entry_id = part.ids[0]
            vector, meta = part.vectors.rows[0].astype(np.float32), part.meta(0)
            tick = part.tick_of(entry_id)
            part.remove(entry_id)
            before = self._slab.nbytes
            self._slab.add(part.key, vector, meta, tick)
            self._lru[entry_id] = self._slab
            self._charge(self._slab.nbytes - before)
        self._charge(-held)
