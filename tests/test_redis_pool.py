"""Many concurrent misses on one node with Redis: no lookup skips Redis for want of a
connection, and every answer reaches Redis (the pool waits instead of failing)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from node_harness import TEST_DEADLINES, NodeFactory, RedisServer, Stub

# 300 in CI; `CACHEFLEET_POOL_CONCURRENCY=1000` gives the figure in docs/cache-node.md.
CONCURRENCY = int(os.environ.get("CACHEFLEET_POOL_CONCURRENCY", "300"))


class PeakClients:
    """Samples Redis's `connected_clients` in a thread until stopped; keeps the peak."""

    def __init__(self, port: int) -> None:
        self._client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            clients = int(self._client.info("clients")["connected_clients"])
            self.peak = max(self.peak, clients)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


async def test_concurrent_misses_all_reach_redis(
    node_factory: NodeFactory, redis_server: RedisServer, stub: Stub
) -> None:
    node = await node_factory(
        {
            "redis": {"url": redis_server.url},
            # The test is about Redis: on a loaded machine, 1,000 connections to the
            # in-process stub take longer than the default 5 s to open.
            "upstream": {"base_url": stub.base_url, "connect_timeout_s": 120},
            # The exact tier alone: the test is about Redis, not the embedder's queue.
            "namespaces": [{"name": "default", "semantic": False}],
            "deadlines": {**TEST_DEADLINES, "redis_ms": 10_000, "write_ms": 60_000},
        }
    )
    questions = [f"Pool question number {i}" for i in range(CONCURRENCY)]
    peak = PeakClients(redis_server.port)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=node.url, timeout=300, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": q}]},
                )
                for q in questions
            )
        )
    await node.settle()
    connections = peak.stop()
    samples = [
        sample
        for family in text_string_to_metric_families((await node.client.get("/metrics")).text)
        for sample in family.samples
    ]
    redis_errors = {
        s.labels["kind"]: s.value
        for s in samples
        if s.name == "cachefleet_tier_errors_total" and s.labels["tier"] == "redis"
    }
    leases = {
        s.labels["outcome"]: s.value for s in samples if s.name == "cachefleet_fleet_leases_total"
    }
    print(
        f"concurrency={CONCURRENCY} peak_redis_clients={connections} "
        f"redis_tier_errors={redis_errors} leases={leases}"
    )

    assert [r.status_code for r in responses] == [200] * CONCURRENCY
    outcomes = Counter(r.headers["x-cachefleet-cache"] for r in responses)
    reasons = Counter(r.headers.get("x-cachefleet-bypass-reason") for r in responses)
    assert outcomes == {"miss": CONCURRENCY}, (outcomes, reasons)  # no lookup skipped Redis
    assert await stub.calls() == CONCURRENCY
    stored = redis.Redis(host="127.0.0.1", port=redis_server.port)
    keys = list(stored.scan_iter(match="cf:e:default:*", count=1000))
    assert len(keys) == CONCURRENCY  # every answer reached Redis
    assert redis_errors == {}  # no Redis call failed: none waited past its deadline
