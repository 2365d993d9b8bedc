"""Index sweep of the durable semantic tier (issue 17): Milvus index and search parameters.

`make bench-index-sweep` (`python -m cachefleet_bench index-sweep`; options: `--rows`,
`--random-rows`, `--queries`, `--indexes` (labels of `INDEXES`), `--segment-mb` (segment
size of the server), `--output`). One Milvus 2.3.5 standalone server (the PyPI
`milvus`, installed at run time like `make bench-scale`'s peers), one collection created by
the node's `MilvusVectorStore`, loaded once through its `insert`:

- namespace `bench`: `--rows` all-MiniLM-L6-v2 vectors of Quora questions, stretched with
  seeded perturbations (the corpus of the scale bench's `cachefleet_durable`: near
  duplicates, a hard case for top-1); queries: Quora paraphrases and stored vectors.
- namespace `random`: `--random-rows` seeded random unit vectors (the partitions bench's hard
  case); queries near a stored row (cosine ~0.8) and random ones.

Then, per index (`INDEXES`): release, drop the index, create it, time until it covers every
row (rows indexed over time), load, and per search setting (`ef` or `nprobe`) search every
query one at a time through `MilvusVectorStore.nearest` (the node's filter): p50/p99, and
top-1 against an exact inner-product search of the namespace's own rows. Writes
`docs/benchmarks/index-sweep.json`; timings hold for the machine they ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pymilvus import MilvusClient

from cachefleet_bench.datasets import default_data_dir
from cachefleet_bench.scale import (
    DEFAULT_PEERS_DIR,
    build_corpus,
    milvus_server,
    use_peers,
)
from cachefleet_bench.vectors import VectorCache
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.embedders.base import Vectors
from cachefleet_node.tiers.milvus_store import MilvusVectorStore, VectorRow
from cachefleet_node.tiers.vector_tier import VectorQuery

__all__ = ["INDEXES", "load_average", "main", "segment_settings", "sweep_entry", "unit_rows"]

TENANT, MODEL, PARTITION = "acme", "gpt-4o-mini", "p0"
TTL_S = 30 * 86_400
CHUNK = 1_000
NOISE = 0.7 / np.sqrt(384)  # a query near a stored random row: cosine ~0.8
INDEX_WAIT_S = 1_800.0
POLL_S = 2.0
CALL_TIMEOUT_S = 60.0
DEFAULT_OUTPUT = Path("docs/benchmarks/index-sweep.json")
# (label, index type, build params, search settings: the `params` of each search)
INDEXES: list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]] = [
    (
        "HNSW M18 efC100",
        "HNSW",
        {"M": 18, "efConstruction": 100},
        [{"ef": 32}, {"ef": 64}, {"ef": 128}],
    ),
    (
        "HNSW M18 efC64",
        "HNSW",
        {"M": 18, "efConstruction": 64},
        [{}, {"ef": 32}, {"ef": 64}, {"ef": 128}],
    ),
    ("AUTOINDEX", "AUTOINDEX", {}, [{}, {"ef": 32}, {"ef": 64}, {"ef": 128}]),
    ("IVF_SQ8 nlist256", "IVF_SQ8", {"nlist": 256}, [{"nprobe": 16}, {"nprobe": 32}]),
]


def sweep_entry(namespace: str, row: int, now: float) -> CacheEntry:
    """The entry of a sweep's row `row` in `namespace` (one tenant, model and partition)."""
    return CacheEntry(
        entry_id=f"{namespace[:1]}{row:063x}",
        namespace=namespace,
        tenant=TENANT,
        model=MODEL,
        created_at=now,
        expires_at=now + TTL_S,
        answers=(b"{}",),
        partition=PARTITION,
    )


def unit_rows(rows: npt.NDArray[np.floating[Any]]) -> Vectors:
    """`rows` scaled to unit length, as float32."""
    unit: Vectors = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return unit


def _quantiles(ms: list[float]) -> dict[str, float]:
    values = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
    }


def segment_settings(segment_mb: int) -> str:
    """Make the Milvus server started next seal segments at `segment_mb` (0: its defaults);
    the setting in words, for the report."""
    if not segment_mb:
        return "default segment settings (sealed at 0.23 x 512 MB)"
    # Milvus reads any config key from the environment (upper case, `_` for `.`)
    os.environ["DATACOORD_SEGMENT_MAXSIZE"] = str(segment_mb)
    os.environ["DATACOORD_SEGMENT_SEALPROPORTION"] = "1"
    return f"dataCoord.segment.maxSize {segment_mb} MB, sealProportion 1"


def load_average() -> float:
    """The machine's 1-minute load average (recorded beside each measurement)."""
    return round(os.getloadavg()[0], 2)


def _rebuild(
    admin: MilvusClient, collection: str, index_type: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Drop the vector index, create `index_type`, wait until it covers every row, load."""
    admin.release_collection(collection, timeout=CALL_TIMEOUT_S)
    admin.drop_index(collection, "vector", timeout=CALL_TIMEOUT_S)
    index = admin.prepare_index_params()
    index.add_index("vector", index_type=index_type, metric_type="IP", params=params)
    started = time.monotonic()
    admin.create_index(collection, index, timeout=CALL_TIMEOUT_S)
    progress: list[dict[str, Any]] = []
    while (now := time.monotonic() - started) < INDEX_WAIT_S:
        info = admin.describe_index(collection, "vector", timeout=CALL_TIMEOUT_S)
        # after a drop and create, `indexed_rows` still counts the old index's rows:
        # the new one covers the rows not pending
        total, pending = int(info.get("total_rows", 0)), int(info.get("pending_index_rows", 0))
        progress.append(
            {"at_s": round(now, 1), "indexed_rows": total - pending, "load": load_average()}
        )
        if total and pending == 0:
            break
        time.sleep(POLL_S)
    built_s = time.monotonic() - started
    admin.load_collection(collection, timeout=CALL_TIMEOUT_S * 10)
    return {
        "build_s": round(built_s, 1),
        "rows_indexed_per_s": round(progress[-1]["indexed_rows"] / max(built_s, 1e-9)),
        "progress": progress[:: max(len(progress) // 30, 1)],
        "load_average_1m": load_average(),
    }


async def _measure(
    store: MilvusVectorStore, sets: dict[str, tuple[str, Vectors, Vectors, list[str]]]
) -> dict[str, Any]:
    """Per query set (namespace, queries, the namespace's rows, their ids): latency and top-1
    against exact search; plus all searches' p50/p99."""
    out: dict[str, Any] = {}
    every: list[float] = []
    for name, (namespace, queries, rows, ids) in sets.items():
        exact = np.argmax(rows @ queries.T, axis=0)
        timings, same = [], 0
        for query, best in zip(queries, exact, strict=True):
            started = time.perf_counter()
            hits = await store.nearest(
                VectorQuery(namespace, TENANT, PARTITION, query, 1, time.time())
            )
            timings.append((time.perf_counter() - started) * 1000)
            same += bool(hits) and hits[0].entry_id == ids[int(best)]
        every += timings
        out[name] = {"top1_recall": round(same / len(queries), 4), **_quantiles(timings)}
    out["all"] = {**_quantiles(every), "load_average_1m": load_average()}
    return out


async def sweep(uri: str, stored: Vectors, paraphrases: Vectors, args: argparse.Namespace) -> Any:
    """Load the rows once, then every index of `INDEXES` and its search settings."""
    rng = np.random.default_rng(7)
    random_rows = unit_rows(rng.normal(size=(args.random_rows, stored.shape[1])))
    picks = rng.integers(args.random_rows, size=args.queries)
    near = unit_rows(random_rows[picks] + rng.normal(0, NOISE, (args.queries, stored.shape[1])))
    wild = unit_rows(rng.normal(size=(args.queries, stored.shape[1])))
    own = stored[rng.integers(len(stored), size=args.queries)]
    store = MilvusVectorStore(uri, None, "sweep", stored.shape[1])
    await store.connect()
    admin = MilvusClient(uri=uri, timeout=CALL_TIMEOUT_S)
    now = time.time()
    started = time.perf_counter()
    for namespace, rows in (("bench", stored), ("random", random_rows)):
        for start in range(0, len(rows), CHUNK):
            end = min(start + CHUNK, len(rows))
            await store.insert(
                [VectorRow(sweep_entry(namespace, i, now), rows[i]) for i in range(start, end)]
            )
    load_s = time.perf_counter() - started
    admin.flush(store.collection, timeout=CALL_TIMEOUT_S)
    print(f"loaded {len(stored) + len(random_rows)} rows in {load_s:.0f} s", flush=True)
    bench_ids = [sweep_entry("bench", i, now).entry_id for i in range(len(stored))]
    random_ids = [sweep_entry("random", i, now).entry_id for i in range(len(random_rows))]
    sets = {
        "quora_paraphrase": ("bench", paraphrases[: args.queries], stored, bench_ids),
        "stored_vector": ("bench", own, stored, bench_ids),
        "random_ns_near": ("random", near, random_rows, random_ids),
        "random_ns_random": ("random", wild, random_rows, random_ids),
    }
    results = []
    chosen = [label for label in args.indexes.split(",") if label]
    for label, index_type, params, settings in INDEXES:
        if chosen and label not in chosen:
            continue
        print(f"{label}: building", flush=True)
        built = _rebuild(admin, store.collection, index_type, params)
        info = admin.describe_index(store.collection, "vector", timeout=CALL_TIMEOUT_S)
        segments = admin.list_loaded_segments(store.collection, timeout=CALL_TIMEOUT_S)
        searches = []
        for setting in settings:
            store.search_params = setting
            searched = await _measure(store, sets)
            print(f"  {setting}: {json.dumps(searched)}", flush=True)
            searches.append({"params": setting, **searched})
        results.append(
            {
                "index": label,
                "index_type": info.get("index_type"),
                "build_params": params,
                "sealed_segments": len(segments),
                "segment_rows": sorted(int(s.num_rows) for s in segments),
                **built,
                "searches": searches,
            }
        )
    await store.close()
    admin.close()
    return {"load_s": round(load_s, 1), "rows": len(stored) + len(random_rows), "indexes": results}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sweep's options."""
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--random-rows", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--indexes", default="", help="labels of INDEXES to run (default all)")
    parser.add_argument(
        "--segment-mb",
        type=int,
        default=0,
        help="seal segments at this size (dataCoord.segment.maxSize, sealProportion 1)",
    )
    parser.add_argument("--peers-dir", default=str(DEFAULT_PEERS_DIR))
    parser.add_argument("--cache-dir", default="~/.cache/cachefleet/bench")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))


def main(args: argparse.Namespace) -> int:
    """Run the sweep on a fresh Milvus server; writes the results file."""
    model_dir = Path(os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR", ""))
    peers = Path(args.peers_dir).resolve()
    if not use_peers(peers):
        return 1
    cache = VectorCache(model_dir, Path(args.cache_dir).expanduser())
    corpus = build_corpus(cache, default_data_dir(), args.rows, args.queries, 1)
    segments = segment_settings(args.segment_mb)
    report: dict[str, Any] = {
        "server": f"milvus 2.3.5 standalone (PyPI), {segments}",
        "load_average_1m_at_start": load_average(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="cachefleet-index-sweep-") as folder,
        milvus_server(Path(folder)) as server,
    ):
        uri = f"http://127.0.0.1:{server.listen_port}"
        stored, paraphrases = corpus.vectors["stored"], corpus.vectors["queries"]
        report.update(asyncio.run(sweep(uri, stored, paraphrases, args)))
    report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    report["load_average_1m_at_end"] = load_average()
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0
