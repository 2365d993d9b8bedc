"""The admin contract end to end: a real node serves `cachefleet_contract.admin`'s answers, the
operator's node client sends its requests and parses those answers, and nothing the node sends
is outside the models (an answer dumped from its model is the node's JSON, field for field)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from cachefleet_contract.admin import (
    Counters,
    EmbeddingSpaces,
    InvalidateRequest,
    NamespacesReport,
    Readiness,
    ReembedRequest,
    StatsReport,
    WarmRequest,
)
from cachefleet_operator.adapters.nodes import NodeClient, NodeError
from node_harness import NodeFactory, RedisServer, Stub

NEXT_MODEL = "cachefleet-test/minilm-next"
QUESTION = "How do I rotate the API key of my account?"


async def raw(url: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return (await client.get(path)).json()


async def test_the_operator_client_reads_what_the_node_serves(
    node_factory: NodeFactory,
    stub: Stub,
    redis_server: RedisServer,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CF_TEST_CONTRACT_KEY", "sk-contract-test")
    node = await node_factory(
        {
            "redis": {"url": redis_server.url},
            "embedding_next": {"model_id": NEXT_MODEL, "model_dir": str(model_dir)},
            # warming replays requests upstream with the node's own key
            "upstream": {"api_key_env": "CF_TEST_CONTRACT_KEY", "base_url": stub.base_url},
        }
    )
    for _ in range(2):
        assert (await node.chat(QUESTION)).status_code == 200
    await node.settle()
    client = NodeClient(timeout=30)
    try:
        # Reads: each model holds exactly what the node sent.
        for path, model in (
            ("/readyz", Readiness),
            ("/v1/cache/stats", StatsReport),
            ("/v1/cache/namespaces", NamespacesReport),
            ("/v1/cache/embedding", EmbeddingSpaces),
        ):
            sent = await raw(node.url, path)
            assert model.model_validate(sent).model_dump(mode="json") == sent, path

        ready = await client.readiness(node.url)
        assert ready.status == "ready"
        assert ready.tiers is not None
        assert (ready.tiers.store.kind, ready.tiers.coherence) == ("redis", True)

        stats = await client.stats(node.url)
        own = stats.namespaces["default"].node
        assert (own.requests, own.hits_exact, own.misses, own.hit_rate) == (2, 1, 1, 0.5)
        assert stats.tiers.redis
        assert stats.namespaces["default"].entries == 1
        # One budget: the exact and semantic tiers and the next model's embedding cache.
        assert stats.l1.budget_bytes is not None
        assert stats.l1.budget_bytes > 0
        assert {"l1_exact", "l1_semantic", "embeddings"} <= set(stats.l1.tier_bytes)
        assert sum(stats.l1.tier_bytes.values()) <= stats.l1.budget_bytes
        assert stats.l1.tier_bytes["l1_exact"] == stats.l1.exact_bytes > 0

        report = await client.namespaces(node.url)
        assert report.active == {"default": "default"}
        assert report.entries == {"default": 1}
        assert report.embedding == await client.embedding(node.url)
        spaces = report.embedding
        assert spaces.next is not None
        assert spaces.next.model_id == NEXT_MODEL

        # Lifecycle calls with the contract's requests.
        reembedded = await client.reembed(
            node.url, ReembedRequest(namespace="default", cursor="", limit=100)
        )
        assert (reembedded.processed, reembedded.total, reembedded.done) == (1, 1, True)

        switched = await client.switch_namespace(node.url, "default", "default-v2")
        assert switched.active == {"default": "default-v2"}
        warmed = await client.warm(
            node.url,
            WarmRequest(from_namespace="default", name="default", offset=0, limit=5, rate_per_s=50),
        )
        assert (warmed.processed, warmed.stored, warmed.total, warmed.done) == (1, 1, 1, True)

        dry = await client.invalidate(
            node.url, InvalidateRequest(namespace="default", dry_run=True)
        )
        counts = dry.removed["default"]
        assert (dry.dry_run, counts.store, counts.matched) == (True, 1, None)
        assert counts.vectors_next is not None  # a migration: both spaces are counted
        with pytest.raises(NodeError) as refused:
            await client.invalidate(
                node.url, InvalidateRequest(namespace="default-v2", retired_only=True)
            )
        assert (refused.value.status, refused.value.code) == (409, "namespace_active")

        after = await client.switch_embedding(node.url, spaces.next.space)
        assert after.active.space == spaces.next.space
        assert after.next is not None
        assert after.next.space == spaces.active.space
    finally:
        await client.aclose()


def test_stats_from_a_node_without_the_memory_budget_still_parse() -> None:
    before_the_budget = {
        "node_id": "n1",
        "uptime_s": 1.0,
        "active": {"default": "default"},
        "namespaces": {},
        "l1": {"exact_entries": 1, "exact_bytes": 900, "semantic_entries": 1},
        "tiers": {"store": "redis", "milvus_connected": True, "redis": True},
    }
    l1 = StatsReport.model_validate(before_the_budget).l1
    assert (l1.budget_bytes, l1.tier_bytes, l1.evictions) == (None, {}, {})


def test_counters_add_and_report_their_rate() -> None:
    a = Counters(requests=4, hits_exact=1, hits_semantic=1, misses=2, cost_saved_dollars=0.1)
    total = a + Counters(requests=1, bypasses=1)
    assert (total.requests, total.hits, total.bypasses) == (5, 2, 1)
    assert total.increment_since(a) == Counters(requests=1, bypasses=1)
    assert total.increment_since(Counters(requests=9)) == total  # a reset: everything is new
    assert total.model_dump(mode="json")["hit_rate"] == 0.4
