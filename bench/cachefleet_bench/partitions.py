"""Partition benchmark (`make bench-partitions`): many tenants' namespaces in Milvus.

The durable semantic tier keeps one collection per embedding space with `namespace` as its
partition key (`cachefleet_node.tiers.milvus_store`). This measures that layout with many
namespaces, through the node's own `MilvusVectorStore` (its `insert` and `nearest`), on a
Milvus 2.3.5 standalone server (the PyPI `milvus`, installed at run time like
`make bench-scale`'s peers):

- `partition_key`: `--partitions` small namespaces of `--rows` rows each, plus
  `--large-partitions` of `--large-rows` rows (a skewed mix), in one collection: insert rate,
  time until the index covers every row, the server's RSS (its process tree, from /proc),
  `nearest` p50/p99 in a small and in a large namespace, and recall@1 of the filtered search
  against an exact search of the namespace's own rows, for queries near a stored row
  (a paraphrase) and for random ones (no row near: the hard case for a filtered graph).
- `collection_per_namespace`, the alternative, at a size it still fits (`--collections`, a
  fresh server): time to create (and load) each collection as `MilvusVectorStore.connect`
  does, the server's RSS per collection, and the time to load them all again after a release
  (what a restarted server pays before serving).

Vectors are seeded random unit vectors (384 dimensions, as all-MiniLM-L6-v2), regenerated per
namespace from the seed, so the exact answers need no copy of the rows. Writes
`partitions.json`; timings hold for the machine they ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import MilvusClient

from cachefleet_bench.scale import DEFAULT_PEERS_DIR, milvus_server, use_peers
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.embedders.base import Vectors
from cachefleet_node.tiers.milvus_store import WRITE_BATCH_ROWS, MilvusVectorStore, VectorRow
from cachefleet_node.tiers.vector_tier import VectorQuery

__all__ = ["Plan", "add_arguments", "main", "measure_collections", "measure_partition_key"]

DIM = 384
TENANT, MODEL, PARTITION = "acme", "gpt-4o-mini", "p0"
TTL_S = 30 * 86_400
NOISE = 0.7 / np.sqrt(DIM)  # a "paraphrase": cosine ~0.8 to its stored row
INDEX_WAIT_S = 1_800.0  # longest wait for the index to cover every row
INDEX_POLL_S = 2.0
CALL_TIMEOUT_S = 60.0  # admin calls (flush, load, describe): slower than a lookup
DEFAULT_OUTPUT = Path("docs/benchmarks/partitions.json")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    partitions: int = 10_000
    rows: int = 20
    large_partitions: int = 4
    large_rows: int = 10_000
    queries: int = 300  # per kind (near, random) and per namespace size (small, large)
    collections: int = 100
    collection_rows: int = 20
    seed: int = 7


def _namespaces(plan: Plan) -> list[tuple[str, int]]:
    """(namespace, rows) of every namespace: the small ones, then the large ones."""
    small = [(f"ns{i:05d}", plan.rows) for i in range(plan.partitions)]
    return small + [(f"big{i}", plan.large_rows) for i in range(plan.large_partitions)]


def _vectors(seed: int, index: int, count: int) -> Vectors:
    """The rows of namespace number `index` (the same on every call)."""
    rows = np.random.default_rng((seed, index)).normal(size=(count, DIM)).astype(np.float32)
    unit: Vectors = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def _entry_id(namespace: str, row: int) -> str:
    return f"{namespace}-{row:06d}"


def _rows(namespace: str, vectors: Vectors, now: float) -> list[VectorRow]:
    return [
        VectorRow(
            CacheEntry(
                entry_id=_entry_id(namespace, i),
                namespace=namespace,
                tenant=TENANT,
                model=MODEL,
                created_at=now,
                expires_at=now + TTL_S,
                answers=(b"{}",),
                partition=PARTITION,
            ),
            vector,
        )
        for i, vector in enumerate(vectors)
    ]


def tree_rss(pid: int) -> int:
    """RSS of a process and its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            status = Path(f"/proc/{current}/status").read_text()
            total += next(
                int(line.split()[1]) * 1024
                for line in status.splitlines()
                if line.startswith("VmRSS:")
            )
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
    return total


def _quantiles(samples_ms: list[float]) -> dict[str, Any]:
    ms = np.asarray(samples_ms)
    return {
        "n": len(samples_ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def _wait_for_index(admin: MilvusClient, collection: str) -> float:
    """Flush, then wait until the vector index covers every row: seconds waited. A server
    that does not report index progress (Milvus Lite) returns at once."""
    started = time.monotonic()
    admin.flush(collection, timeout=CALL_TIMEOUT_S)
    while time.monotonic() - started < INDEX_WAIT_S:
        info = admin.describe_index(collection, "vector", timeout=CALL_TIMEOUT_S)
        if "total_rows" not in info:
            break
        total, indexed = int(info["total_rows"]), int(info.get("indexed_rows", 0))
        if indexed >= total and int(info.get("pending_index_rows", 0)) == 0:
            break
        time.sleep(INDEX_POLL_S)
    return round(time.monotonic() - started, 1)


async def _search(
    plan: Plan, targets: list[tuple[MilvusVectorStore, int, str, int]]
) -> dict[str, Any]:
    """Latency and recall@1 of `nearest` in namespaces `targets` (store, index, name, rows):
    per namespace one query near a random stored row and one random query."""
    rng = np.random.default_rng(plan.seed + 1)
    timings: list[float] = []
    found = {"near": 0, "random": 0}
    for store, index, namespace, count in targets:
        rows = _vectors(plan.seed, index, count)
        near = rows[rng.integers(count)] + rng.normal(0, NOISE, DIM).astype(np.float32)
        wild = rng.normal(size=DIM).astype(np.float32)
        for kind, raw in (("near", near), ("random", wild)):
            vector = raw / np.linalg.norm(raw)
            exact = _entry_id(namespace, int(np.argmax(rows @ vector)))
            query = VectorQuery(namespace, TENANT, PARTITION, vector, 1, time.time())
            started = time.perf_counter()
            hits = await store.nearest(query)
            timings.append((time.perf_counter() - started) * 1000)
            found[kind] += bool(hits) and hits[0].entry_id == exact
    return {
        "nearest": _quantiles(timings),
        "recall_at_1_near": round(found["near"] / len(targets), 4),
        "recall_at_1_random": round(found["random"] / len(targets), 4),
        "queries_per_kind": len(targets),
    }


async def measure_partition_key(uri: str, pid: int, plan: Plan) -> dict[str, Any]:
    """The node's layout: every namespace in one collection, `namespace` its partition key."""
    collection = f"parts_{os.getpid()}_{int(time.time())}"
    store = MilvusVectorStore(uri, None, collection, DIM)
    admin = MilvusClient(uri=uri, timeout=CALL_TIMEOUT_S)
    rss_empty = tree_rss(pid)
    await store.connect()
    try:
        rss_created = tree_rss(pid)
        namespaces = _namespaces(plan)
        now, rows_total, pending = time.time(), 0, []
        started = time.perf_counter()
        for index, (namespace, count) in enumerate(namespaces):
            pending += _rows(namespace, _vectors(plan.seed, index, count), now)
            while len(pending) >= WRITE_BATCH_ROWS or (index == len(namespaces) - 1 and pending):
                batch, pending = pending[:WRITE_BATCH_ROWS], pending[WRITE_BATCH_ROWS:]
                await store.insert(batch)
                rows_total += len(batch)
        insert_s = time.perf_counter() - started
        index_s = await asyncio.to_thread(_wait_for_index, admin, collection)
        rss_loaded = tree_rss(pid)
        small = np.random.default_rng(plan.seed).choice(
            plan.partitions, min(plan.queries, plan.partitions), replace=False
        )
        small_picks = [(store, int(i), *namespaces[int(i)]) for i in small]
        large = range(plan.partitions, len(namespaces))
        large_picks = [
            (store, large[i % len(large)], *namespaces[large[i % len(large)]])
            for i in range(plan.queries if large else 0)
        ]
        searches = {"small_namespace": await _search(plan, small_picks)}
        if large_picks:
            searches["large_namespace"] = await _search(plan, large_picks)
        physical = await asyncio.to_thread(admin.list_partitions, collection)
        return {
            "namespaces": len(namespaces),
            "rows": rows_total,
            "physical_partitions": len(physical),
            "insert_rows_per_s": round(rows_total / insert_s, 1),
            "insert_s": round(insert_s, 1),
            "insert_note": f"MilvusVectorStore.insert, {WRITE_BATCH_ROWS} rows a call, one writer",
            "index_caught_up_s": index_s,
            "server_rss_bytes": {"empty": rss_empty, "created": rss_created, "loaded": rss_loaded},
            "server_rss_bytes_per_row": round((rss_loaded - rss_created) / rows_total),
            "searches": searches,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        await store.close()
        with contextlib.suppress(Exception):
            admin.drop_collection(collection, timeout=CALL_TIMEOUT_S)
        admin.close()


async def measure_collections(uri: str, pid: int, plan: Plan) -> dict[str, Any]:
    """The alternative: one collection per namespace (`plan.collections` of them)."""
    prefix = f"ns_{os.getpid()}_{int(time.time())}"
    admin = MilvusClient(uri=uri, timeout=CALL_TIMEOUT_S)
    stores: list[MilvusVectorStore] = []
    rss_empty = tree_rss(pid)
    create_ms: list[float] = []
    try:
        now = time.time()
        for index in range(plan.collections):
            store = MilvusVectorStore(uri, None, f"{prefix}_{index}", DIM)
            started = time.perf_counter()
            await store.connect()  # create, index, load, warm-up search
            create_ms.append((time.perf_counter() - started) * 1000)
            stores.append(store)
            vectors = _vectors(plan.seed, index, plan.collection_rows)
            await store.insert(_rows(f"ns{index:05d}", vectors, now))
        for store in stores:
            await asyncio.to_thread(admin.flush, store.collection, timeout=CALL_TIMEOUT_S)
        rss_loaded = tree_rss(pid)
        picks = [(s, i, f"ns{i:05d}", plan.collection_rows) for i, s in enumerate(stores)]
        search = await _search(plan, picks)
        for store in stores:
            await asyncio.to_thread(
                admin.release_collection, store.collection, timeout=CALL_TIMEOUT_S
            )
        rss_released = tree_rss(pid)
        started = time.perf_counter()
        for store in stores:
            await asyncio.to_thread(admin.load_collection, store.collection, timeout=CALL_TIMEOUT_S)
        load_s = time.perf_counter() - started
        return {
            "collections": plan.collections,
            "rows_each": plan.collection_rows,
            "create_and_load_ms": _quantiles(create_ms),
            "create_and_load_total_s": round(sum(create_ms) / 1000, 1),
            "server_rss_bytes": {
                "empty": rss_empty,
                "loaded": rss_loaded,
                "released": rss_released,
                "reloaded": tree_rss(pid),
            },
            "server_rss_bytes_per_collection": round((rss_loaded - rss_empty) / plan.collections),
            "reload_all_s": round(load_s, 1),
            "reload_ms_per_collection": round(load_s * 1000 / plan.collections, 1),
            "searches": search,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        for store in stores:
            await store.close()
            with contextlib.suppress(Exception):
                admin.drop_collection(store.collection, timeout=CALL_TIMEOUT_S)
        admin.close()


@contextlib.contextmanager
def _server(work: Path) -> Iterator[tuple[str, int]]:
    """A fresh Milvus standalone server: (uri, its PID); its data removed on exit."""
    with milvus_server(work) as server:
        yield f"http://127.0.0.1:{server.listen_port}", server.server_proc.pid


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m cachefleet_bench partitions`."""
    defaults = Plan()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=value)
    parser.add_argument("--peers-dir", default=str(DEFAULT_PEERS_DIR))
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))


def main(args: argparse.Namespace) -> int:
    """Both layouts, each on a fresh Milvus server; writes the results file."""
    plan = Plan(**{name: getattr(args, name) for name in asdict(Plan())})
    peers = Path(args.peers_dir).resolve()
    if not use_peers(peers):
        return 1
    load = [os.getloadavg()[0]]
    results: dict[str, Any] = {"plan": asdict(plan), "server": "milvus 2.3.5 standalone (PyPI)"}
    with tempfile.TemporaryDirectory(prefix="cachefleet-partitions-") as folder:
        with _server(Path(folder) / "key") as (uri, pid):
            print(
                f"partition key: {plan.partitions} + {plan.large_partitions} namespaces", flush=True
            )
            results["partition_key"] = asyncio.run(measure_partition_key(uri, pid, plan))
            load.append(os.getloadavg()[0])
        with _server(Path(folder) / "collections") as (uri, pid):
            print(f"one collection per namespace: {plan.collections}", flush=True)
            results["collection_per_namespace"] = asyncio.run(measure_collections(uri, pid, plan))
            load.append(os.getloadavg()[0])
    results["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_1m": [round(x, 2) for x in load],
    }
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0
