"""Identical concurrent misses on two node processes sharing one Redis make one upstream call
(single flight across nodes: a Redis lease per exact key), fail open when the lease holder's
call fails or Redis is down, and never cache a failed answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx

from cachefleet_node.flights import LEASE_S
from node_harness import (
    NodeProcess,
    RedisServer,
    Stub,
)


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **fields}


def answer_of(reply: httpx.Response) -> str:
    return str(reply.json()["choices"][0]["message"]["content"])


async def _spread(
    client: httpx.AsyncClient, nodes: list[NodeProcess], body: dict[str, Any], count: int
) -> list[httpx.Response]:
    """`count` identical requests at once, alternating between the nodes."""
    return await asyncio.gather(
        *(
            client.post(f"{nodes[i % len(nodes)].url}/v1/chat/completions", json=body)
            for i in range(count)
        )
    )


async def _upstream_called(stub: Stub) -> None:
    for _ in range(1000):
        if await stub.calls() > 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no upstream call within 10 s")


async def _metric(client: httpx.AsyncClient, node: NodeProcess, series: str) -> float:
    text = (await client.get(f"{node.url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series)
    )


async def test_fifty_identical_requests_on_two_nodes_make_one_upstream_call(
    node_pair: list[NodeProcess], stub: Stub
) -> None:
    await stub.behave(latency_ms=400)
    async with httpx.AsyncClient(timeout=30) as client:
        replies = await _spread(client, node_pair, chat("What is our refund window?"), 50)
        assert [r.status_code for r in replies] == [200] * 50
        assert await stub.calls() == 1
        assert len({answer_of(r) for r in replies}) == 1
        # one reply went upstream: a miss, or a bypass when its semantic lookup skipped a
        # Milvus that 25 concurrent searches per node kept busy (shed) or slow (a loaded box)
        results = [r.headers["x-cachefleet-cache"] for r in replies]
        called = [r for r in replies if r.headers["x-cachefleet-cache"] != "hit-exact"]
        assert len(called) == 1, results
        assert called[0].headers["x-cachefleet-cache"] in {"miss", "bypass"}, results
        if called[0].headers["x-cachefleet-cache"] == "bypass":
            reasons = set(called[0].headers["x-cachefleet-bypass-reason"].split(","))
            assert reasons <= {"milvus-busy", "milvus-timeout"}, reasons
        landed = 'cachefleet_fleet_lease_wait_seconds_count{outcome="landed"}'
        assert sum([await _metric(client, n, landed) for n in node_pair]) >= 1
        # streamed requests wait for the whole answer, then replay it
        await stub.behave(latency_ms=300)
        streamed = await _spread(client, node_pair, chat("And for gift cards?", stream=True), 10)
        assert [r.status_code for r in streamed] == [200] * 10
        assert all(r.text.rstrip().endswith("data: [DONE]") for r in streamed)
        assert await stub.calls() == 2


async def test_a_failed_lease_holder_lets_the_waiters_call_upstream_and_caches_nothing_bad(
    node_pair: list[NodeProcess], stub: Stub
) -> None:
    node_a, node_b = node_pair
    body = chat("Can I change my delivery address?")
    await stub.behave(latency_ms=1000, fail_next=1, fail_status=500)
    async with httpx.AsyncClient(timeout=30) as client:
        holder = asyncio.create_task(client.post(f"{node_a.url}/v1/chat/completions", json=body))
        await _upstream_called(stub)  # node A holds the lease and is upstream now
        waiters = await _spread(client, [node_b], body, 5)
        assert (await holder).status_code == 500  # the holder's own error, passed through
        assert [r.status_code for r in waiters] == [200] * 5
        assert len({answer_of(r) for r in waiters}) == 1
        assert await stub.calls() == 2  # the holder's failed call and node B's own
        assert (
            await _metric(
                client, node_b, 'cachefleet_fleet_lease_wait_seconds_count{outcome="abandoned"}'
            )
            == 1.0
        )
        # what is cached is the good answer, served to either node
        for node in node_pair:
            again = await client.post(f"{node.url}/v1/chat/completions", json=body)
            assert again.status_code == 200
            assert again.headers["x-cachefleet-cache"] == "hit-exact"
            assert answer_of(again) == answer_of(waiters[0])
        assert await stub.calls() == 2


async def test_redis_down_still_answers_every_request(
    node_pair: list[NodeProcess], stub: Stub, redis_server: RedisServer
) -> None:
    redis_server.stop()
    await stub.behave(latency_ms=500)
    async with httpx.AsyncClient(timeout=30) as client:
        replies = await _spread(client, node_pair, chat("Where is my order?"), 10)
        assert [r.status_code for r in replies] == [200] * 10
        assert len({answer_of(r) for r in replies}) == 1
        assert 1 <= await stub.calls() <= 2  # one call per node at most: per-node single flight


async def test_a_killed_lease_holder_frees_its_waiters_within_seconds(
    node_pair: list[NodeProcess], stub: Stub
) -> None:
    """The lease is short and renewed by a live holder: kill -9 the holder mid-call and the
    other node's waiter calls the upstream itself once the lease lapses (seconds), instead of
    waiting out the upstream's timeout (300 s by default)."""
    node_a, node_b = node_pair
    body = chat("How do I reset my router?")
    await stub.behave(latency_ms=60_000)  # node A's call never finishes before it dies
    async with httpx.AsyncClient(timeout=90) as client:
        holder = asyncio.create_task(client.post(f"{node_a.url}/v1/chat/completions", json=body))
        await _upstream_called(stub)
        waiter = asyncio.create_task(client.post(f"{node_b.url}/v1/chat/completions", json=body))
        await asyncio.sleep(5 * LEASE_S)  # renewals keep the lease across several lifetimes
        assert not waiter.done()
        await stub.behave(latency_ms=100)
        node_a.process.kill()
        node_a.process.wait()
        started = time.monotonic()
        reply = await waiter
        waited = time.monotonic() - started
        assert reply.status_code == 200
        assert reply.headers["x-cachefleet-cache"] == "miss"
        assert waited < 45, f"the waiter took {waited:.1f} s after the holder died"
        assert await stub.calls() == 2
        with contextlib.suppress(httpx.HTTPError):
            await holder
