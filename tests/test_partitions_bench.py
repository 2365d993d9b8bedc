"""`make bench-partitions` in miniature, on the session's Milvus Lite server: 50 namespaces of
5 rows (plus one of 200) in one collection, and 5 collections of 5 rows; every search finds
the namespace's exact nearest row at this size."""

from __future__ import annotations

import asyncio

from cachefleet_bench import partitions
from node_harness import MilvusServer

PLAN = partitions.Plan(
    partitions=50,
    rows=5,
    large_partitions=1,
    large_rows=200,
    queries=20,
    collections=5,
    collection_rows=5,
)


def test_partition_key_layout_finds_each_namespace_nearest(milvus_server: MilvusServer) -> None:
    result = asyncio.run(
        partitions.measure_partition_key(milvus_server.uri, milvus_server.process.pid, PLAN)
    )
    assert result["namespaces"] == 51
    assert result["rows"] == 50 * 5 + 200
    assert result["insert_rows_per_s"] > 0
    assert result["physical_partitions"] >= 1
    assert result["server_rss_bytes"]["loaded"] > 0
    for size in ("small_namespace", "large_namespace"):
        search = result["searches"][size]
        assert search["queries_per_kind"] == 20
        assert search["nearest"]["n"] == 40
        assert 0 < search["nearest"]["p50_ms"] <= search["nearest"]["p99_ms"]
        assert search["recall_at_1_near"] == 1.0
        assert search["recall_at_1_random"] == 1.0


def test_collection_per_namespace_layout(milvus_server: MilvusServer) -> None:
    result = asyncio.run(
        partitions.measure_collections(milvus_server.uri, milvus_server.process.pid, PLAN)
    )
    assert result["collections"] == 5
    assert result["create_and_load_ms"]["n"] == 5
    assert result["reload_all_s"] >= 0
    assert result["searches"]["nearest"]["n"] == 10
    assert result["searches"]["recall_at_1_near"] == 1.0
    assert result["searches"]["recall_at_1_random"] == 1.0
