"""Filter sweep of the durable semantic tier (issue 17): what the node's search filter costs.

`make bench-filter-sweep` (`python -m cachefleet_bench filter-sweep`; options: `--rows`,
`--other-rows`, `--queries`, `--segment-mb`, `--output`). One Milvus 2.3.5 standalone server
(the PyPI `milvus`, as `make bench-index-sweep` starts it), two collections created by the
node's `MilvusVectorStore` (HNSW M18 efC64, IP, `namespace` the partition key), loaded with the
same rows through its `insert`: namespace `bench`, `--rows` seeded random unit vectors (one
tenant, one partition fingerprint: the node's filter keeps every row of the namespace), and
namespace `other`, `--other-rows` more. Collection `scalar` also has scalar indexes
(`SCALAR_INDEXES`), created before the load; `plain` has none (the node's schema).

Once every vector index covers every row, each query (near a stored `bench` row, cosine ~0.8)
is searched one at a time with each variant (`VARIANTS`: filter and collection), variants
interleaved in a rotating order, with the node's `nearest` call (limit 1, `ef` 64, the same
output fields): p50/p99 per variant and top-1 against an exact inner-product search of
`bench`'s rows. Writes `--output` (`docs/benchmarks/milvus-filter.json` holds two runs,
the second with `--segment-mb 1024`, under `runs`).
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
from pymilvus import MilvusClient

from cachefleet_bench.index_sweep import (
    PARTITION,
    TENANT,
    load_average,
    segment_settings,
    sweep_entry,
    unit_rows,
)
from cachefleet_bench.scale import DEFAULT_PEERS_DIR, milvus_server, use_peers
from cachefleet_node.embedders.base import Vectors
from cachefleet_node.tiers.milvus_store import SEARCH_EF, MilvusVectorStore, VectorRow

__all__ = ["SCALAR_INDEXES", "VARIANTS", "main"]

DIM = 384
CHUNK = 1_000
NOISE = 0.7 / np.sqrt(DIM)  # a query near a stored row: cosine ~0.8
CALL_TIMEOUT_S = 60.0
INDEX_WAIT_S = 1_800.0
DEFAULT_OUTPUT = Path("docs/benchmarks/milvus-filter.json")
# (field, index type) of collection `scalar`
SCALAR_INDEXES = [("tenant", "Trie"), ("partition", "Trie"), ("expires_at", "STL_SORT")]
FULL = (
    f'namespace == "bench" and tenant == "{TENANT}" and partition == "{PARTITION}" '
    "and expires_at > {now}"
)
# (label, collection, filter template)
VARIANTS = [
    ("a: full filter", "plain", FULL),
    ("b: namespace only", "plain", 'namespace == "bench"'),
    ("c: no filter", "plain", ""),
    ("a2: full filter less expiry", "plain", FULL.split(" and expires_at")[0]),
    ("d: full filter, scalar indexes", "scalar", FULL),
    ("d-b: namespace only, scalar indexes", "scalar", 'namespace == "bench"'),
    ("d-c: no filter, scalar indexes", "scalar", ""),
]
OUTPUT_FIELDS = ["namespace", "tenant", "partition", "created_at", "vector"]


def _wait_indexed(admin: MilvusClient, collection: str) -> float:
    """Seconds until every index of `collection` covers every row."""
    started = time.monotonic()
    while time.monotonic() - started < INDEX_WAIT_S:
        pending = 0
        for name in admin.list_indexes(collection, timeout=CALL_TIMEOUT_S):
            info = admin.describe_index(collection, name, timeout=CALL_TIMEOUT_S)
            total = int(info.get("total_rows", 0))
            pending += int(info.get("pending_index_rows", 0)) + (total == 0)
        if pending == 0:
            break
        time.sleep(2.0)
    return round(time.monotonic() - started, 1)


async def _fill(stores: list[MilvusVectorStore], rows: dict[str, Vectors], now: float) -> None:
    for namespace, vectors in rows.items():
        for start in range(0, len(vectors), CHUNK):
            batch = [
                VectorRow(sweep_entry(namespace, i, now), vectors[i])
                for i in range(start, min(start + CHUNK, len(vectors)))
            ]
            await asyncio.gather(*(store.insert(batch) for store in stores))


async def _prepare(uri: str, rows: dict[str, Vectors]) -> dict[str, Any]:
    """Create both collections, the scalar indexes of `scalar`, and load the rows."""
    stores = [MilvusVectorStore(uri, None, name, DIM) for name in ("plain", "scalar")]
    for store in stores:
        await store.connect()
    admin = MilvusClient(uri=uri, timeout=CALL_TIMEOUT_S)
    admin.release_collection("scalar", timeout=CALL_TIMEOUT_S)
    index = admin.prepare_index_params()
    for field, index_type in SCALAR_INDEXES:
        index.add_index(field, index_type=index_type, index_name=f"{field}_idx")
    admin.create_index("scalar", index, timeout=CALL_TIMEOUT_S)
    admin.load_collection("scalar", timeout=CALL_TIMEOUT_S)
    now = time.time()
    started = time.perf_counter()
    await _fill(stores, rows, now)
    load_s = time.perf_counter() - started
    for store in stores:
        await store.close()
    out: dict[str, Any] = {"load_s": round(load_s, 1), "collections": {}}
    for name in ("plain", "scalar"):
        admin.flush(name, timeout=CALL_TIMEOUT_S)
        built = _wait_indexed(admin, name)
        admin.release_collection(name, timeout=CALL_TIMEOUT_S)
        admin.load_collection(name, timeout=CALL_TIMEOUT_S * 10)
        segments = admin.list_loaded_segments(name, timeout=CALL_TIMEOUT_S)
        out["collections"][name] = {
            "indexes": {
                n: admin.describe_index(name, n, timeout=CALL_TIMEOUT_S).get("index_type")
                for n in admin.list_indexes(name, timeout=CALL_TIMEOUT_S)
            },
            "index_wait_s": built,
            "sealed_segments": len(segments),
            "segment_rows": sorted(int(s.num_rows) for s in segments),
        }
    admin.close()
    return out


def _measure(uri: str, queries: Vectors, exact_ids: list[str]) -> dict[str, Any]:
    """Every query with every variant, interleaved (rotating order), one at a time."""
    client = MilvusClient(uri=uri, timeout=CALL_TIMEOUT_S)
    params = {"metric_type": "IP", "params": {"ef": SEARCH_EF}}
    timings: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
    same = dict.fromkeys(timings, 0)
    loads = []
    for n, (query, best) in enumerate(zip(queries, exact_ids, strict=True)):
        order = VARIANTS[n % len(VARIANTS) :] + VARIANTS[: n % len(VARIANTS)]
        for label, collection, template in order:
            started = time.perf_counter()
            result = client.search(
                collection,
                data=[query.tolist()],
                limit=1,
                filter=template.format(now=int(time.time() * 1000)),
                output_fields=OUTPUT_FIELDS,
                search_params=params,
                timeout=CALL_TIMEOUT_S,
            )
            timings[label].append((time.perf_counter() - started) * 1000)
            same[label] += bool(result and result[0]) and result[0][0]["id"] == best
        if n % 50 == 0:
            loads.append(load_average())
    client.close()
    out: dict[str, Any] = {}
    for label, collection, template in VARIANTS:
        values = np.asarray(timings[label])
        out[label] = {
            "collection": collection,
            "filter": template,
            "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p99_ms": round(float(np.percentile(values, 99)), 2),
            "mean_ms": round(float(values.mean()), 2),
            "top1_recall": round(same[label] / len(queries), 4),
        }
    base = np.asarray(timings[VARIANTS[0][0]])
    for label, _, _ in VARIANTS[1:]:
        paired = np.asarray(timings[label]) - base
        out[label]["paired_median_minus_a_ms"] = round(float(np.median(paired)), 2)
    out["load_average_1m_during"] = loads
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sweep's options."""
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--other-rows", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--segment-mb",
        type=int,
        default=0,
        help="seal segments at this size (dataCoord.segment.maxSize, sealProportion 1)",
    )
    parser.add_argument("--peers-dir", default=str(DEFAULT_PEERS_DIR))
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))


def main(args: argparse.Namespace) -> int:
    """Run the sweep on a fresh Milvus server; writes the results file."""
    peers = Path(args.peers_dir).resolve()
    if not use_peers(peers):
        return 1
    rng = np.random.default_rng(11)
    bench = unit_rows(rng.normal(size=(args.rows, DIM)))
    other = unit_rows(rng.normal(size=(args.other_rows, DIM)))
    picks = rng.integers(args.rows, size=args.queries)
    queries = unit_rows(bench[picks] + rng.normal(0, NOISE, (args.queries, DIM)))
    exact = np.argmax(bench @ queries.T, axis=0)
    exact_ids = [sweep_entry("bench", int(i), 0).entry_id for i in exact]
    segments = segment_settings(args.segment_mb)
    report: dict[str, Any] = {
        "server": f"milvus 2.3.5 standalone (PyPI), {segments}",
        "rows": {"bench": args.rows, "other": args.other_rows},
        "queries": args.queries,
        "search_params": {"ef": SEARCH_EF, "limit": 1},
        "load_average_1m_at_start": load_average(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="cachefleet-filter-sweep-") as folder,
        milvus_server(Path(folder)) as server,
    ):
        uri = f"http://127.0.0.1:{server.listen_port}"
        report.update(asyncio.run(_prepare(uri, {"bench": bench, "other": other})))
        print(json.dumps(report, indent=1), flush=True)
        report["load_average_1m_before_search"] = load_average()
        report["searches"] = _measure(uri, queries, exact_ids)
    report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    report["load_average_1m_at_end"] = load_average()
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["searches"], indent=1))
    return 0
