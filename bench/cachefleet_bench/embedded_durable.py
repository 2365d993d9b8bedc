"""Embedded durable tier candidates (issue 17): Milvus Lite against in-process vector engines.

`python -m cachefleet_bench embedded-durable` (options: `--sizes`, `--engines` (labels of
`ENGINES`), `--queries`, `--slow-queries`, `--milvus-max-rows`, `--crash-rows`, `--output`).
The optional engines are installed by hand into the virtualenv (pinned in the docs, not in
the lock file): `usearch`, `faiss-cpu`, `sqlite-vec` with `pysqlite3-binary` (the
interpreter's `sqlite3` cannot load extensions). An engine whose package is missing is
skipped and said so in the results.

Per size, every engine gets the same rows and queries, one engine after the other, each phase
in a fresh process (RSS never shrinks back):

- rows: seeded random unit vectors (384 dimensions, as all-MiniLM-L6-v2), regenerated chunk
  by chunk from the seed (a worker never holds all rows), keyed by row number; every 10th row
  is in one of 7 other partitions, the rest in partition 0 (what the queries ask for);
- queries: near a stored row of partition 0 (cosine ~0.8), top-4 searched one at a time on
  one thread with the partition filter (`filtering` says how each engine applies it), and
  recall@1 against an exact inner-product search of partition 0's rows;
- build: batched inserts (`WRITE_BATCH_ROWS` rows a call, as the node's write batches; index
  builds use every core), searches right after the load, then the explicit persist (`persist`
  says what it does); RSS of the process tree from /proc, before and after the load; CPU
  time (`time.process_time`, every thread: Milvus Lite runs in the process) beside wall time,
  as the machine is shared;
- restart: a fresh process opens the files and searches: time to the first answer, then
  the searches again and the RSS; then, for the HNSW engines, the searches at other `ef`
  (`EF_SWEEP`; random rows are the hard case for a graph); usearch also memory-maps the saved
  file (`view`, read-only) and searches it (the file's pages warm in the page cache);
- crash: a fresh process inserts `--crash-rows` rows, checkpoints (the explicit save; Milvus
  Lite: nothing, its write-ahead log holds them), inserts as many again, and is killed
  (SIGKILL, with any server it started); a fresh process counts the rows that survive.

Milvus Lite runs as the node uses it, through `MilvusVectorStore` on a `.db` path (HNSW
M18 efC64, `ef` 64, the node's filter on namespace, tenant, partition and expiry). Writes
`--output` (JSON) and a PNG beside it; timings hold for the machine they ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cachefleet_bench.index_sweep import PARTITION, TENANT, load_average, sweep_entry, unit_rows
from cachefleet_bench.partitions import _vectors, tree_rss
from cachefleet_bench.scale import _disk_bytes
from cachefleet_node.embedders.base import Vectors
from cachefleet_node.tiers.milvus_store import (
    INDEX_BUILD,
    SEARCH_EF,
    WRITE_BATCH_ROWS,
    MilvusVectorStore,
    VectorRow,
)
from cachefleet_node.tiers.vector_tier import VectorQuery

__all__ = ["ENGINES", "add_arguments", "main", "partition_of"]

DIM = 384
LIMIT = 4  # the node's lookup asks for the top 4
CHUNK = WRITE_BATCH_ROWS
OTHER_PARTITIONS = 7
NOISE = 0.7 / np.sqrt(DIM)  # a query near a stored row: cosine ~0.8
SEED = 17
HNSW_M, HNSW_EF_CONSTRUCTION = 16, int(INDEX_BUILD["efConstruction"])
EF_SWEEP = (32, 128, 256, 512)  # HNSW search efforts tried after the restart (the node's: 64)
OVERFETCH = 4  # usearch (no filter in its Python search): ask for LIMIT x this, then filter
DEFAULT_OUTPUT = Path("docs/benchmarks/embedded-durable.json")
Keys = npt.NDArray[np.int64]


def partition_of(keys: Keys) -> npt.NDArray[np.uint8]:
    """The partition of each row: 0, or for every 10th row one of the other partitions."""
    other = (1 + (keys // 10) % OTHER_PARTITIONS).astype(np.uint8)
    return np.where(keys % 10 == 9, other, 0).astype(np.uint8)


def _chunks(rows: int, first: int = 0) -> Iterator[tuple[Keys, Vectors]]:
    """(keys, vectors) of rows `first`..`rows`, one insert batch at a time."""
    for index in range(first // CHUNK, (rows + CHUNK - 1) // CHUNK):
        start = index * CHUNK
        count = min(CHUNK, rows - start)
        yield np.arange(start, start + count, dtype=np.int64), _vectors(SEED, index, CHUNK)[:count]


def _queries(rows: int, count: int) -> tuple[Vectors, Keys]:
    """Queries near stored rows of partition 0, and each one's exact nearest row there
    (`rows` a multiple of 10)."""
    rng = np.random.default_rng((SEED, rows))
    picks = rng.integers(rows // 10, size=count) * 10 + rng.integers(9, size=count)
    sources = np.stack([_vectors(SEED, int(p) // CHUNK, CHUNK)[int(p) % CHUNK] for p in picks])
    queries = unit_rows(sources + rng.normal(0, NOISE, sources.shape))
    best = np.full(count, -np.inf)
    exact = np.zeros(count, dtype=np.int64)
    for keys, vectors in _chunks(rows):
        scores = vectors @ queries.T
        scores[partition_of(keys) != 0] = -np.inf
        top = np.argmax(scores, axis=0)
        better = scores[top, np.arange(count)] > best
        best[better] = scores[top, np.arange(count)][better]
        exact[better] = keys[top][better]
    return queries, exact


# --- engines (the optional packages are imported when an engine is made) ---


class Engine:
    """One candidate, in one worker process."""

    label = ""
    package = ""
    slow = False  # searches scan rows: run `--slow-queries` of them
    persist = ""
    durability = ""
    filtering = ""
    deletes = ""

    def create(self, folder: Path) -> None:
        raise NotImplementedError

    def open(self, folder: Path) -> None:
        raise NotImplementedError

    def add(self, keys: Keys, vectors: Vectors, parts: npt.NDArray[np.uint8]) -> None:
        raise NotImplementedError

    def save(self) -> None:
        raise NotImplementedError

    def set_ef(self, ef: int) -> None:
        """The HNSW search effort (engines with one: not `slow`)."""
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Make the rows so far survive a kill -9, keeping the engine open (the crash test)."""
        self.save()

    def search(self, query: Vectors, part: int) -> list[int]:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Release what is open (after `save`, nothing is left to write)."""


class _Parts:
    """Key -> partition, beside an index with no filter of its own (a side file)."""

    def __init__(self) -> None:
        self.codes = np.zeros(0, dtype=np.uint8)
        self.size = 0

    def add(self, keys: Keys, parts: npt.NDArray[np.uint8]) -> None:
        end = int(keys.max()) + 1
        if end > len(self.codes):
            grown = np.zeros(max(end, 2 * len(self.codes)), dtype=np.uint8)
            grown[: self.size] = self.codes[: self.size]
            self.codes = grown
        self.codes[keys] = parts
        self.size = max(self.size, end)

    def save(self, path: Path) -> None:
        np.save(path, self.codes[: self.size])

    def load(self, path: Path) -> None:
        self.codes = np.load(path)
        self.size = len(self.codes)


def _replace_atomically(path: Path, write: Any) -> None:
    partial = path.with_name(path.name + ".tmp")
    write(str(partial))
    os.replace(partial, path)


class Usearch(Engine):
    """usearch HNSW (M16, efC64, ef64), vectors stored as `dtype`."""

    package = "usearch"
    persist = "Index.save of the whole index to a temporary file, then a rename"
    durability = "only explicit saves: rows added since the last save are lost on kill -9"
    filtering = f"none in the Python API: over-fetch top {LIMIT * OVERFETCH}, filter by key"
    deletes = "Index.remove(keys) (marks them deleted; the graph keeps its nodes)"

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.label = f"usearch {dtype}"
        self.index: Any = None
        self.parts = _Parts()
        self.folder = Path()

    def create(self, folder: Path) -> None:
        usearch = importlib.import_module("usearch.index")
        self.folder = folder
        self.index = usearch.Index(
            ndim=DIM,
            metric="cos",
            dtype=self.dtype,
            connectivity=HNSW_M,
            expansion_add=HNSW_EF_CONSTRUCTION,
            expansion_search=SEARCH_EF,
        )

    def open(self, folder: Path) -> None:
        self.create(folder)
        self.index.load(str(folder / "index.usearch"))
        self.parts.load(folder / "parts.npy")

    def add(self, keys: Keys, vectors: Vectors, parts: npt.NDArray[np.uint8]) -> None:
        self.index.add(keys, vectors, threads=os.cpu_count() or 1)
        self.parts.add(keys, parts)

    def set_ef(self, ef: int) -> None:
        self.index.expansion_search = ef

    def view(self, folder: Path) -> None:
        """Open the saved index memory-mapped, read-only (its pages in the page cache)."""
        usearch = importlib.import_module("usearch.index")
        self.index = usearch.Index.restore(str(folder / "index.usearch"), view=True)
        self.index.expansion_search = SEARCH_EF
        self.parts.load(folder / "parts.npy")

    def save(self) -> None:
        _replace_atomically(self.folder / "index.usearch", self.index.save)
        self.parts.save(self.folder / "parts.npy")

    def search(self, query: Vectors, part: int) -> list[int]:
        want = LIMIT * OVERFETCH
        while True:
            keys = np.asarray(self.index.search(query, want, threads=1).keys, dtype=np.int64)
            kept = keys[self.parts.codes[keys] == part]
            if len(kept) >= LIMIT or len(keys) < want:
                return [int(k) for k in kept[:LIMIT]]
            want *= 4

    def count(self) -> int:
        return int(self.index.size)


class Faiss(Engine):
    """faiss IndexHNSWFlat (M16, efC64, efSearch 64, inner product); keys are row numbers."""

    package = "faiss"
    label = "faiss HNSWFlat"
    persist = "faiss.write_index of the whole index to a temporary file, then a rename"
    durability = "only explicit saves: rows added since the last save are lost on kill -9"
    filtering = "SearchParametersHNSW.sel: an IDSelectorBitmap per partition"
    deletes = "none on HNSW indexes (remove_ids unsupported): tombstones in the selector"

    def __init__(self) -> None:
        self.faiss: Any = None
        self.index: Any = None
        self.parts = _Parts()
        self.folder = Path()
        self.selectors: dict[int, tuple[int, Any, Any]] = {}
        self.ef = SEARCH_EF

    def create(self, folder: Path) -> None:
        self.faiss = importlib.import_module("faiss")
        self.folder = folder
        self.index = self.faiss.IndexHNSWFlat(DIM, HNSW_M, self.faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION

    def open(self, folder: Path) -> None:
        self.faiss = importlib.import_module("faiss")
        self.folder = folder
        self.index = self.faiss.read_index(str(folder / "index.faiss"))
        self.parts.load(folder / "parts.npy")

    def add(self, keys: Keys, vectors: Vectors, parts: npt.NDArray[np.uint8]) -> None:
        assert int(keys[0]) == self.index.ntotal, "faiss HNSW numbers rows in insert order"
        self.faiss.omp_set_num_threads(os.cpu_count() or 1)
        self.index.add(vectors)
        self.parts.add(keys, parts)

    def save(self) -> None:
        _replace_atomically(
            self.folder / "index.faiss", lambda path: self.faiss.write_index(self.index, path)
        )
        self.parts.save(self.folder / "parts.npy")

    def _selector(self, part: int) -> Any:
        cached = self.selectors.get(part)
        if cached is None or cached[0] != self.index.ntotal:
            bits = np.packbits(self.parts.codes[: self.index.ntotal] == part, bitorder="little")
            selector = self.faiss.IDSelectorBitmap(self.index.ntotal, self.faiss.swig_ptr(bits))
            params = self.faiss.SearchParametersHNSW()
            params.efSearch = self.ef
            params.sel = selector
            cached = (self.index.ntotal, params, (bits, selector))
            self.selectors[part] = cached
        return cached[1]

    def set_ef(self, ef: int) -> None:
        self.ef = ef
        self.selectors.clear()

    def search(self, query: Vectors, part: int) -> list[int]:
        self.faiss.omp_set_num_threads(1)
        _, keys = self.index.search(query[None, :], LIMIT, params=self._selector(part))
        return [int(k) for k in keys[0] if k >= 0]

    def count(self) -> int:
        return int(self.index.ntotal)


class SqliteVec(Engine):
    """sqlite-vec `vec0` (brute force), partition 0..7 a partition key column, in WAL mode."""

    package = "sqlite_vec"
    label = "sqlite-vec"
    slow = True
    persist = "every batch is a committed transaction (WAL, synchronous=NORMAL); a checkpoint"
    durability = "committed batches survive kill -9 (the WAL); fsync per checkpoint"
    filtering = "vec0 partition key column: a search reads only that partition's chunks"
    deletes = "DELETE by rowid; metadata columns can be filtered (expiry, tenant)"

    def __init__(self) -> None:
        self.db: Any = None

    def _connect(self, folder: Path) -> None:
        sqlite3 = importlib.import_module("pysqlite3.dbapi2")
        self.db = sqlite3.connect(str(folder / "vectors.db"), isolation_level=None)
        self.db.enable_load_extension(True)
        importlib.import_module("sqlite_vec").load(self.db)
        self.db.enable_load_extension(False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")

    def create(self, folder: Path) -> None:
        self._connect(folder)
        self.db.execute(
            "CREATE VIRTUAL TABLE vectors USING vec0("
            f"part integer partition key, embedding float[{DIM}] distance_metric=cosine)"
        )

    def open(self, folder: Path) -> None:
        self._connect(folder)

    def add(self, keys: Keys, vectors: Vectors, parts: npt.NDArray[np.uint8]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT INTO vectors(rowid, part, embedding) VALUES (?, ?, ?)",
            zip(keys.tolist(), parts.tolist(), (v.tobytes() for v in vectors), strict=True),
        )
        self.db.execute("COMMIT")

    def save(self) -> None:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def search(self, query: Vectors, part: int) -> list[int]:
        found = self.db.execute(
            "SELECT rowid FROM vectors WHERE embedding MATCH ? AND k = ? AND part = ?"
            " ORDER BY distance",
            (query.astype(np.float32).tobytes(), LIMIT, part),
        ).fetchall()
        return [int(row[0]) for row in found]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self.db.close()


def _namespace(part: int) -> str:
    return "bench" if part == 0 else f"other{part}"


class MilvusLite(Engine):
    """Milvus Lite as the node uses it: `MilvusVectorStore` on a `.db` path."""

    package = "milvus_lite"
    label = "Milvus Lite"
    slow = True
    persist = "MilvusVectorStore.close: flush into indexed segments, stop the server"
    durability = "its write-ahead log: rows of completed inserts survive kill -9"
    filtering = "the node's filter expression: namespace (partition key), tenant, partition, expiry"
    deletes = "filtered deletes (scope), delete by id, expiry purge: as the node does now"

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.store: MilvusVectorStore | None = None
        self.now = time.time()

    def _open(self, folder: Path) -> MilvusVectorStore:
        store = MilvusVectorStore(str(folder / "milvus.db"), None, "bench", DIM)
        self.loop.run_until_complete(store.connect())
        return store

    def create(self, folder: Path) -> None:
        self.store = self._open(folder)

    def open(self, folder: Path) -> None:
        self.store = self._open(folder)

    def add(self, keys: Keys, vectors: Vectors, parts: npt.NDArray[np.uint8]) -> None:
        assert self.store is not None
        rows = [
            VectorRow(sweep_entry(_namespace(int(part)), int(key), self.now), vector)
            for key, vector, part in zip(keys, vectors, parts, strict=True)
        ]
        self.loop.run_until_complete(self.store.insert(rows))

    def save(self) -> None:
        assert self.store is not None
        self.loop.run_until_complete(self.store.close())
        self.store = None

    def checkpoint(self) -> None:
        """Nothing: rows of completed inserts are in the write-ahead log already."""

    def search(self, query: Vectors, part: int) -> list[int]:
        assert self.store is not None
        query_ = VectorQuery(_namespace(part), TENANT, PARTITION, query, LIMIT, time.time())
        hits = self.loop.run_until_complete(self.store.nearest(query_))
        return [int(hit.entry_id[1:], 16) for hit in hits]

    def count(self) -> int:
        """All rows (Milvus Lite counts by scanning them: past the store's call deadline)."""
        assert self.store is not None
        client = self.store._require()
        found = client.query(
            self.store.collection, filter="", output_fields=["count(*)"], timeout=600
        )
        return int(found[0]["count(*)"])

    def close(self) -> None:
        if self.store is not None:
            self.save()


ENGINES: dict[str, Any] = {
    "usearch-f32": lambda: Usearch("f32"),
    "usearch-f16": lambda: Usearch("f16"),
    "usearch-i8": lambda: Usearch("i8"),
    "faiss-hnsw": Faiss,
    "sqlite-vec": SqliteVec,
    "milvus-lite": MilvusLite,
}


def _version(engine: Engine) -> str | None:
    """The installed version of the engine's package, or None when it is missing."""
    names = {
        "usearch": "usearch",
        "faiss": "faiss-cpu",
        "sqlite_vec": "sqlite-vec",
        "milvus_lite": "milvus-lite",
    }
    try:
        importlib.import_module(engine.package)
        return importlib.metadata.version(names[engine.package])
    except ImportError:
        return None


# --- phases, each in a fresh process ---


def _rss() -> int:
    return tree_rss(os.getpid())


def _searches(engine: Engine, queries: Vectors, exact: Keys, count: int) -> dict[str, Any]:
    timings, cpu, same, errors = [], [], 0, []
    for query, best in zip(queries[:count], exact[:count], strict=True):
        started, started_cpu = time.perf_counter(), time.process_time()
        try:
            keys = engine.search(query, 0)
        except Exception as exc:  # Milvus Lite: a search past its call deadline
            keys = []
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        same += bool(keys) and keys[0] == int(best)
    ms = np.asarray(timings)
    return {
        "queries": len(timings),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "cpu_ms_mean": round(float(np.mean(cpu)), 3),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "recall_at_1": round(same / len(timings), 4),
        "load_average_1m": load_average(),
    }


def run_build(
    name: str, folder: Path, rows: int, queries: Vectors, exact: Keys, count: int
) -> dict[str, Any]:
    """Create, load `rows` rows, search, persist (one worker process)."""
    engine: Engine = ENGINES[name]()
    rss_start = _rss()
    engine.create(folder)
    rss_empty = _rss()
    started, started_cpu = time.perf_counter(), time.process_time()
    step = max(rows // 10, CHUNK)
    for keys, vectors in _chunks(rows):
        engine.add(keys, vectors, partition_of(keys))
        done = int(keys[-1]) + 1
        if done % step < CHUNK or done == rows:
            rate = done / (time.perf_counter() - started)
            print(f"    {name} {rows}: {done} rows, {rate:.0f}/s", flush=True)
    insert_s = time.perf_counter() - started
    insert_cpu_s = time.process_time() - started_cpu
    rss_loaded = _rss()
    searched = _searches(engine, queries, exact, count)
    print(f"    {name} {rows}: searches after load {searched}", flush=True)
    started = time.perf_counter()
    engine.save()
    save_s = time.perf_counter() - started
    engine.close()
    return {
        "insert_s": round(insert_s, 1),
        "inserts_per_s": round(rows / insert_s),
        "insert_cpu_s": round(insert_cpu_s, 1),
        "inserts_per_cpu_s": round(rows / max(insert_cpu_s, 1e-9)),
        "batch_rows": CHUNK,
        "rss_start_mb": round(rss_start / 2**20, 1),
        "rss_empty_mb": round(rss_empty / 2**20, 1),
        "rss_loaded_mb": round(rss_loaded / 2**20, 1),
        "rss_bytes_per_row": round((rss_loaded - rss_empty) / rows),
        "after_load": searched,
        "persist_s": round(save_s, 2),
        "load_average_1m": load_average(),
    }


def run_restart(name: str, folder: Path, queries: Vectors, exact: Keys, count: int) -> Any:
    """Open the files, time the first answer, then search and count (one worker process)."""
    engine: Engine = ENGINES[name]()
    rss_start = _rss()
    started, started_cpu = time.perf_counter(), time.process_time()
    engine.open(folder)
    engine.search(queries[0], 0)
    first_s = time.perf_counter() - started
    first_cpu_s = time.process_time() - started_cpu
    searched = _searches(engine, queries, exact, count)
    rss = _rss()
    sweep = {}
    if not engine.slow:
        for ef in EF_SWEEP:
            engine.set_ef(ef)
            sweep[str(ef)] = _searches(engine, queries, exact, count)
    rows = engine.count()
    engine.close()
    viewed = {}
    if isinstance(engine, Usearch):
        started = time.perf_counter()
        engine.view(folder)
        engine.search(queries[0], 0)
        viewed = {
            "to_first_search_s": round(time.perf_counter() - started, 3),
            "searches": _searches(engine, queries, exact, count),
        }
    return {
        "view_mmap": viewed,
        "to_first_search_s": round(first_s, 2),
        "to_first_search_cpu_s": round(first_cpu_s, 2),
        "searches": searched,
        "rows": rows,
        "rss_bytes_per_row": round((rss - rss_start) / max(rows, 1)),
        "ef_sweep": sweep,
    }


def run_count(name: str, folder: Path) -> int:
    """Rows found in the files (one worker process)."""
    engine: Engine = ENGINES[name]()
    engine.open(folder)
    rows = engine.count()
    engine.close()
    return rows


def _crash_writer(name: str, folder: Path, rows: int, ready: Any) -> None:
    engine: Engine = ENGINES[name]()
    engine.create(folder)
    for keys, vectors in _chunks(2 * rows):
        engine.add(keys, vectors, partition_of(keys))
        if int(keys[-1]) + 1 == rows:
            engine.checkpoint()
    ready.set()
    time.sleep(3600)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            kids = [int(child) for child in (task / "children").read_text().split()]
            found += kids
            todo += kids
    return found


def crash(name: str, folder: Path, rows: int) -> dict[str, Any]:
    """Insert `rows`, persist, insert `rows` more, kill -9 (with its servers), count."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    writer = context.Process(target=_crash_writer, args=(name, folder, rows, ready))
    writer.start()
    while not ready.wait(timeout=1.0):
        if not writer.is_alive():
            raise RuntimeError(f"{name}: the crash writer failed (exit {writer.exitcode})")
    assert writer.pid is not None
    for pid in [writer.pid, *_descendants(writer.pid)]:
        os.kill(pid, signal.SIGKILL)
    writer.join()
    survived = _in_fresh_process(run_count, name, folder)
    return {"written": 2 * rows, "checkpointed": rows, "after_kill_9": survived}


def _reporting(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # pymilvus errors do not pickle: send the words back
        raise RuntimeError(f"{type(exc).__name__}: {exc}"[:500]) from None


def _in_fresh_process(fn: Any, *args: Any) -> Any:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_reporting, (fn, *args))


# --- the run ---


def _measure(name: str, rows: int, work: Path, sets: tuple[Vectors, Keys], args: Any) -> Any:
    engine: Engine = ENGINES[name]()
    queries, exact = sets
    count = args.slow_queries if engine.slow else len(queries)
    folder = work / f"{name}-{rows}"
    folder.mkdir()
    try:
        built = _in_fresh_process(run_build, name, folder, rows, queries, exact, count)
        disk = _disk_bytes(folder)
        # Milvus Lite's searches are fast once flushed: the restart searches run them all
        restart_count = len(queries) if name == "milvus-lite" else count
        restarted = _in_fresh_process(run_restart, name, folder, queries, exact, restart_count)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        **built,
        "disk_bytes_per_row": round(disk / rows),
        "disk_mb": round(disk / 2**20, 1),
        "restart": restarted,
    }


def _write(report: dict[str, Any], output: Path) -> None:
    output.write_text(json.dumps(report, indent=2) + "\n")


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("inserts_per_s", "inserts / s (batches of 512)", True),
        ("search_p50_ms", "search p50, top-4 filtered (ms)", True),
        ("restart_s", "restart: open to first answer (s)", True),
        ("rss_bytes_per_row", "RSS per row (bytes)", False),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(18, 4.5))
    sizes = sorted({int(size) for engine in report["engines"].values() for size in engine})
    names = list(report["engines"])
    width = 0.8 / max(len(sizes), 1)
    for axis, (key, title, log) in zip(axes, panels, strict=True):
        for n, size in enumerate(sizes):
            values = []
            for name in names:
                result = report["engines"][name].get(str(size))
                if not result or "error" in result:
                    values.append(np.nan)
                    continue
                values.append(
                    {
                        "inserts_per_s": result["inserts_per_s"],
                        "search_p50_ms": result["restart"]["searches"]["p50_ms"],
                        "restart_s": result["restart"]["to_first_search_s"],
                        "rss_bytes_per_row": result["rss_bytes_per_row"],
                    }[key]
                )
            axis.bar(np.arange(len(names)) + n * width, values, width, label=f"{size:,} rows")
        if key == "inserts_per_s":
            axis.axhline(1_400, color="grey", linestyle="--", linewidth=1)
        if key == "search_p50_ms":
            axis.axhline(5, color="grey", linestyle="--", linewidth=1)
        if key == "rss_bytes_per_row":
            axis.axhline(2048, color="grey", linestyle="--", linewidth=1)
        axis.set_xticks(np.arange(len(names)) + width * (len(sizes) - 1) / 2)
        axis.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        axis.set_title(title, fontsize=9)
        if log:
            axis.set_yscale("log")
    axes[0].legend(fontsize=8)
    figure.suptitle("Embedded durable tier candidates (random unit 384-d rows, 2 shared cores)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run's options."""
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--engines", default=",".join(ENGINES), help="labels of ENGINES")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--slow-queries", type=int, default=50, help="searches of engines that scan rows"
    )
    parser.add_argument(
        "--milvus-max-rows", type=int, default=100_000, help="larger sizes skip Milvus Lite"
    )
    parser.add_argument("--crash-rows", type=int, default=5_120)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--merge", action="store_true", help="keep the results file's others")


def main(args: argparse.Namespace) -> int:
    """Measure every engine at every size; writes the results file and its plot."""
    output = Path(args.output)
    report: dict[str, Any] = {"engines": {}, "about": {}}
    if args.merge and output.is_file():
        report = json.loads(output.read_text())
    report["setup"] = {
        "dim": DIM,
        "limit": LIMIT,
        "partitions": f"90% of rows in partition 0 (searched), 10% in {OTHER_PARTITIONS} others",
        "queries": "near a stored row of partition 0 (cosine ~0.8), one at a time, one thread",
        "hnsw": {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": SEARCH_EF},
        "milvus_lite_hnsw": {**INDEX_BUILD, "ef": SEARCH_EF},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    names = [name for name in args.engines.split(",") if name]
    for name in names:
        engine: Engine = ENGINES[name]()
        report["about"][name] = {
            **report["about"].get(name, {}),
            "label": engine.label,
            "package": engine.package,
            "version": _version(engine),
            "persist": engine.persist,
            "durability": engine.durability,
            "filtering": engine.filtering,
            "deletes": engine.deletes,
        }
    with tempfile.TemporaryDirectory(prefix="cachefleet-embedded-durable-") as folder:
        work = Path(folder)
        for rows in [int(size) for size in args.sizes.split(",")]:
            print(f"{rows} rows: exact answers of {args.queries} queries", flush=True)
            sets = _queries(rows, args.queries)
            for name in names:
                if report["about"][name]["version"] is None:
                    print(f"  {name}: not installed, skipped", flush=True)
                    continue
                if name == "milvus-lite" and rows > args.milvus_max_rows:
                    continue
                print(f"  {name} at {rows} rows (load {load_average()})", flush=True)
                try:
                    result = _measure(name, rows, work, sets, args)
                except Exception as exc:
                    result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                print(f"  {name} {rows}: {json.dumps(result)}", flush=True)
                report["engines"].setdefault(name, {})[str(rows)] = result
                _write(report, output)
        for name in names:
            if report["about"][name]["version"] is None or not args.crash_rows:
                continue
            target = work / f"{name}-crash"
            target.mkdir()
            try:
                report["about"][name]["kill_9"] = crash(name, target, args.crash_rows)
            except Exception as exc:
                report["about"][name]["kill_9"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            finally:
                shutil.rmtree(target, ignore_errors=True)
            print(f"  {name} kill -9: {report['about'][name]['kill_9']}", flush=True)
            _write(report, output)
    report["load_average_1m_at_end"] = load_average()
    _write(report, output)
    if report["engines"]:
        _plot(report, output.with_suffix(".png"))
    return 0
