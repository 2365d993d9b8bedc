"""Identical concurrent misses share one upstream call (single flight, one node)."""

from __future__ import annotations

import asyncio
from typing import Any

from node_harness import Node, Stub

QUESTION = "Summarise our refund policy for a customer."


def content(response: Any) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


async def test_fifty_identical_requests_make_one_upstream_call(node: Node, stub: Stub) -> None:
    await stub.behave(latency_ms=400)
    replies = await asyncio.gather(*(node.chat(QUESTION) for _ in range(50)))
    assert {reply.status_code for reply in replies} == {200}
    assert await stub.calls() == 1
    assert len({content(reply) for reply in replies}) == 1
    results = [reply.headers["x-cachefleet-cache"] for reply in replies]
    assert results.count("miss") == 1
    tiers = {
        r.headers.get("x-cachefleet-tier")
        for r in replies
        if r.headers["x-cachefleet-cache"] != "miss"
    }
    assert tiers <= {"inflight", "l1"}  # shared in flight, or a hit once it was stored
    metrics = (await node.client.get("/metrics")).text
    assert "cachefleet_coalesced_requests_total" in metrics
    assert len(node.runtime.flights) == 0


async def test_streamed_and_plain_followers_share_a_streamed_leader(node: Node, stub: Stub) -> None:
    await stub.behave(latency_ms=300)
    leader = asyncio.create_task(node.chat(QUESTION, stream=True))
    await asyncio.sleep(0.1)  # the leader is upstream now
    followers = await asyncio.gather(
        node.chat(QUESTION, stream=True), node.chat(QUESTION), node.chat(QUESTION, stream=True)
    )
    first = await leader
    assert first.headers["x-cachefleet-cache"] == "miss"
    assert await stub.calls() == 1
    for reply in followers:
        assert reply.status_code == 200
        assert reply.headers["x-cachefleet-cache"] in ("hit-exact",)
    assert followers[1].json()["object"] == "chat.completion"
    assert followers[0].text.rstrip().endswith("data: [DONE]")


async def test_a_failed_leader_lets_every_follower_call_upstream(node: Node, stub: Stub) -> None:
    await stub.behave(latency_ms=300, fail_next=1, fail_status=500)
    replies = await asyncio.gather(*(node.chat(QUESTION) for _ in range(5)))
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses.count(500) == 1  # the leader's own error, passed through
    assert statuses.count(200) == 4  # the others asked the upstream themselves
    assert await stub.calls() >= 2
    assert len(node.runtime.flights) == 0


async def test_no_cache_requests_never_wait_for_a_flight(node: Node, stub: Stub) -> None:
    await stub.behave(latency_ms=300)
    replies = await asyncio.gather(
        node.chat(QUESTION),
        node.chat(QUESTION, headers={"cache-control": "no-cache"}),
    )
    assert {reply.status_code for reply in replies} == {200}
    assert await stub.calls() == 2
