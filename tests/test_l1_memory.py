"""The in-process tiers' budget holds in memory the OS counts: filled well past their budget
with distinct entries (and one partition per entry), the process's RSS grows by at most the
budget plus a stated slack. Each fill runs in a fresh process, as `cachefleet_bench memory`
does (RSS does not shrink back, so runs must not share a process)."""

from __future__ import annotations

import multiprocessing

import pytest

from cachefleet_bench.memory import run_scenario
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
