"""Fail-open: a dead Redis or Milvus or a slow embedder never turns a good answer into an error."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from embedding_service import EmbeddingService
from node_harness import MilvusServer, NodeFactory, RedisServer, Stub, free_port

QUESTION = "How do I export my billing history?"
PARAPHRASE = "how can I export my billing history"
NEW_TOPICS = [
    "What is a good stretching routine for runners?",
    "Translate good morning into Italian",
    "Explain how a heat pump works",
    "Suggest a name for a grey kitten",
    "Why is the sky blue during the day?",
    "Write a haiku about autumn rain",
]
FAST_FAIL = {"redis_ms": 50, "milvus_ms": 200, "embedder_ms": 2000, "breaker_failures": 3}


async def test_redis_killed_mid_run(
    node_factory: NodeFactory, redis_server: RedisServer, stub: Stub
) -> None:
    node = await node_factory({"redis": {"url": redis_server.url}, "deadlines": FAST_FAIL})
    await node.chat(QUESTION)
    await node.settle()
    assert (await node.chat(QUESTION)).headers["x-cachefleet-cache"] == "hit-exact"

    redis_server.stop()
    # hot entries keep being served from the node's own tiers
    assert (await node.chat(QUESTION)).headers["x-cachefleet-cache"] == "hit-exact"
    assert (await node.chat(PARAPHRASE)).headers["x-cachefleet-cache"] == "hit-semantic"
    # new questions go upstream, succeed, and say why the cache was bypassed
    reasons = []
    for topic in NEW_TOPICS:
        started = time.perf_counter()
        response = await node.chat(topic)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"]
        assert response.headers["x-cachefleet-cache"] == "bypass"
        reasons.append(response.headers["x-cachefleet-bypass-reason"])
        assert elapsed < 5
    assert any("redis-error" in r or "redis-timeout" in r for r in reasons)
    assert "redis-unavailable" in reasons[-1]  # the breaker opened: Redis is skipped at once
    ready = await node.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["tiers"]["store"]["breaker_open"] is True
    metrics = (await node.client.get("/metrics")).text
    assert 'cachefleet_bypass_total{reason="redis-unavailable"}' in metrics
    await node.settle()

    assert 'cachefleet_writes_total{outcome="stored-later"}' in metrics

    redis_server.start_again()
    await asyncio.sleep(2.1)  # breaker cool-down (2 s): the next call probes Redis again
    await node.chat("A question after Redis came back")
    await node.settle()
    node.runtime.engine.clear_l1()
    back = await node.chat("A question after Redis came back")
    assert back.headers["x-cachefleet-cache"] == "hit-exact"
    assert back.headers["x-cachefleet-tier"] == "l2"  # written to and read from the new Redis
    # answered while the breaker was open: queued for Redis, written once it was back (a
    # lookup never calls the upstream, so only that queued write can make it a hit)
    asked = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": NEW_TOPICS[-1]}]}
    deadline = time.monotonic() + 30
    while True:
        node.runtime.engine.clear_l1()
        found = (await node.client.post("/v1/cache/lookup", json=asked)).json()
        if found["result"] == "hit-exact":
            break
        assert time.monotonic() < deadline, "the answer given during the outage never landed"
        await asyncio.sleep(0.5)


async def test_milvus_down_at_start_and_during_run(
    node_factory: NodeFactory, milvus_server: MilvusServer, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    node = await node_factory({"milvus": {"uri": dead}, "deadlines": FAST_FAIL})
    first = await node.chat(QUESTION)
    assert first.status_code == 200
    assert first.headers["x-cachefleet-cache"] == "bypass"
    assert first.headers["x-cachefleet-bypass-reason"] == "milvus-unavailable"
    await node.settle()
    # the in-process semantic tier still works without Milvus
    assert (await node.chat(PARAPHRASE)).headers["x-cachefleet-cache"] == "hit-semantic"
    assert (await node.client.get("/readyz")).json()["tiers"]["milvus"]["connected"] is False


async def test_embedder_timing_out(
    node_factory: NodeFactory, service: tuple[EmbeddingService, str], stub: Stub
) -> None:
    server, url = service
    node = await node_factory(
        {
            "embedding": {"kind": "remote", "remote_url": url, "remote_protocol": "tei"},
            "deadlines": {"embedder_ms": 100, "breaker_failures": 100},
        },
        shared_embedder=False,
    )
    await node.chat(QUESTION)
    await node.settle()
    assert (await node.chat(PARAPHRASE)).headers["x-cachefleet-cache"] == "hit-semantic"

    server.delay_s = 1.0  # the GPU pods stall
    started = time.perf_counter()
    slow = await node.chat("how do i export the billing history of my account")
    elapsed = time.perf_counter() - started
    assert slow.status_code == 200
    assert slow.json()["choices"][0]["message"]["content"]
    assert slow.headers["x-cachefleet-cache"] == "bypass"
    assert slow.headers["x-cachefleet-bypass-reason"] == "embedder-timeout"
    assert elapsed < 0.9  # the deadline, not the stalled pod, bounds the wait
    # exact hits need no embedding and keep working
    assert (await node.chat(QUESTION)).headers["x-cachefleet-cache"] == "hit-exact"
    server.delay_s = 0.0
    server.release.set()
