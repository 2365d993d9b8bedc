"""The in-process tiers' budget holds in memory the OS counts: filled well past their budget
with distinct entries (and one partition per entry), the process's RSS grows by at most the
budget plus a stated slack. Each fill runs in a fresh process, as `cachefleet_bench memory`
does (RSS does not shrink back, so runs must not share a process)."""

from __future__ import annotations

import asyncio
import multiprocessing
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from cachefleet_bench.memory import run_scenario, sample_entry
from cachefleet_node.embedders.base import EmbedBudget, Vectors
from cachefleet_node.embedders.cached import CachingEmbedder
from cachefleet_node.memory import MemoryBudget, read_rss
from cachefleet_node.tiers.l1_exact import ByteBoundedLRU
from node_harness import NodeFactory

BUDGET = 8 * 1024 * 1024
ENTRIES = 20_000  # ~2.5x the budget for exact entries, ~9x for one-vector partitions
#: Allocator rounding and fragmentation the counts do not see, plus interpreter noise.
SLACK = 0.15 * BUDGET + 2 * 1024 * 1024


@pytest.mark.parametrize("scenario", ["exact", "partitions", "mixed"])
def test_rss_growth_stays_within_the_budget_plus_slack(scenario: str) -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply(run_scenario, (scenario, ENTRIES, BUDGET, 384))
    last = result["samples"][-1]
    assert last["exact_held"] + last["vectors_held"] < ENTRIES  # it did evict
    assert all(s["counted_bytes"] <= BUDGET for s in result["samples"])
    peak = max(s["rss_growth_bytes"] for s in result["samples"])
    assert peak <= BUDGET + SLACK, result
    # The counts are the real size: held items cost about what they are charged.
    assert result["rss_bytes_per_item"] <= 1.2 * result["counted_bytes_per_item"], result


def test_one_partition_with_its_graph_charges_what_it_holds_in_rss() -> None:
    """float16 rows, the graph's 8-bit codes and links: counted as RSS sees them."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply(run_scenario, ("partition", 30_000, 64 * BUDGET, 384))
    last = result["samples"][-1]
    assert last["vectors_held"] == 30_000  # nothing evicted, the graph built and swapped in
    assert last["counted_bytes"] < 30_000 * 2_700, result  # float32 and a flat graph: 4.5 KB
    # Graphs are rebuilt as the partition grows; the allocator hands a replaced one back to
    # the OS shortly after the swap (RSS is sampled around then), hence the wider band.
    ratio = last["rss_growth_bytes"] / last["counted_bytes"]
    assert 0.7 <= ratio <= 1.3, result


class TableEmbedder:
    """Stands in for the model where only the cache's memory is measured: each text gets a
    fixed random vector chosen by its checksum (the ONNX model would dominate the run time)."""

    model_id, dim, space = "table", 384, "table-384"

    def __init__(self) -> None:
        self._table = np.random.default_rng(0).standard_normal((1024, self.dim), np.float32)

    async def embed(self, texts: Sequence[str], budget: EmbedBudget | None = None) -> Vectors:
        return self._table[[zlib.crc32(text.encode()) % 1024 for text in texts]]

    async def aclose(self) -> None:
        return None


def embedding_cache(budget: MemoryBudget) -> CachingEmbedder:
    """An embedding cache without Redis, charging `budget`, that never hits its entry bound."""
    return CachingEmbedder(TableEmbedder(), None, "cachefleet", 0, 10**9, 0.05, budget)


def fill_embedding_cache(texts: int, budget_bytes: int) -> dict[str, Any]:
    """Embed `texts` distinct texts (batches of 50) in this process; sample counts and RSS."""
    budget = MemoryBudget(budget_bytes)
    cache = embedding_cache(budget)
    start_rss = read_rss()
    samples = []
    for first in range(0, texts, 50):
        asyncio.run(
            cache.embed([f"distinct question number {i}" for i in range(first, first + 50)])
        )
        samples.append(
            {"counted_bytes": budget.used_bytes, "rss_growth_bytes": read_rss() - start_rss}
        )
    held = cache.misses - cache.evictions
    return {
        "samples": samples,
        "evictions": cache.evictions,
        "counted_bytes_per_item": samples[-1]["counted_bytes"] / held,
        "rss_bytes_per_item": samples[-1]["rss_growth_bytes"] / held,
    }


def test_the_embedding_cache_holds_in_rss_what_it_charges_to_the_budget() -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply(fill_embedding_cache, (ENTRIES, BUDGET))
    assert result["evictions"] > 0  # ~2,000 items fill it: it did evict
    assert all(s["counted_bytes"] <= BUDGET for s in result["samples"])
    peak = max(s["rss_growth_bytes"] for s in result["samples"])
    assert peak <= BUDGET + SLACK, result
    assert result["rss_bytes_per_item"] <= 1.2 * result["counted_bytes_per_item"], result


async def test_the_budget_evicts_least_recently_used_across_exact_entries_and_embeddings() -> None:
    budget = MemoryBudget(1 << 30)
    exact = ByteBoundedLRU(budget)
    cache = embedding_cache(budget)
    exact.put(sample_entry(1))
    await cache.embed(["the oldest text"])
    item = cache.bytes_used  # every embedding costs the same (fixed-length keys)
    assert item > 384 * 4
    exact.put(sample_entry(2))
    assert exact.get(sample_entry(1).entry_id, now=0) is not None  # entry 1 is used again
    budget.max_bytes = budget.used_bytes + 11 * item - 1  # room for 11 more embeddings, not 12
    await cache.embed([f"text {i}" for i in range(12)])
    assert budget.used_bytes <= budget.max_bytes
    # Evicted oldest first, whichever tier: "the oldest text", then entry 2; entry 1 stays.
    assert exact.get(sample_entry(1).entry_id, now=0) is not None
    assert exact.get(sample_entry(2).entry_id, now=0) is None
    assert budget.evictions_by_tier() == {"l1_exact": 1, "embeddings": 1}
    assert budget.bytes_by_tier()["embeddings"] == cache.bytes_used == 12 * item
    await cache.embed(["the oldest text"])
    assert cache.misses == 14  # it had been evicted, so it is computed again
    await cache.aclose()  # a closed cache leaves the budget; its evictions stay counted
    assert budget.bytes_by_tier()["embeddings"] == 0
    assert budget.evictions_by_tier()["embeddings"] >= 1


async def test_a_node_charges_both_tiers_to_the_configured_budget_and_exports_it(
    node_factory: NodeFactory,
) -> None:
    node = await node_factory({"l1": {"max_bytes": 5_000_000}})
    stored = await node.client.post(
        "/v1/cache/store",
        json={
            "request": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "How do I reset my password?"}],
            },
            "response": {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Open Settings."},
                        "finish_reason": "stop",
                    }
                ],
            },
        },
    )
    assert stored.status_code == 201, stored.text
    await node.settle()
    engine = node.runtime.engine
    assert engine.memory_budget.max_bytes == 5_000_000
    assert (len(engine.l1_exact), len(engine.l1_semantic)) == (1, 1)
    exported = (await node.client.get("/metrics")).text
    assert "cachefleet_l1_budget_bytes 5e+06" in exported
    for tier in ("l1_exact", "l1_semantic"):
        line = next(
            x
            for x in exported.splitlines()
            if x.startswith(f'cachefleet_l1_bytes{{tier="{tier}"}}')
        )
        assert float(line.split()[-1]) > 0, line
    l1 = (await node.client.get("/v1/cache/stats")).json()["l1"]
    assert l1["budget_bytes"] == 5_000_000
    assert l1["tier_bytes"]["l1_exact"] == engine.l1_exact.bytes_used
    assert l1["tier_bytes"]["l1_semantic"] == engine.l1_semantic.bytes_used
    assert l1["evictions"] == {"l1_exact": 0, "l1_semantic": 0}
