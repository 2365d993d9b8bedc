"""Two node processes sharing Redis and Milvus: invalidations and switches reach both."""

from __future__ import annotations

import asyncio
import time

import httpx

from node_harness import (
    NodeProcess,
    Stub,
)

QUESTION = "How do I rotate my API keys?"
PARAPHRASE = "how can I rotate my api keys"


def chat(content: str) -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}


async def _until(check: object, timeout_s: float, interval_s: float = 0.02) -> float:
    """Poll an async predicate; return seconds until it held, or fail after the timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await check():  # type: ignore[operator]
            return time.monotonic() - started
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not reached within {timeout_s}s")


async def test_nodes_share_tiers_and_invalidation_reaches_every_l1(
    node_pair: list[NodeProcess], stub: Stub
) -> None:
    node_a, node_b = node_pair
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.post(f"{node_a.url}/v1/chat/completions", json=chat(QUESTION))
        assert first.headers["x-cachefleet-cache"] == "miss"

        async def b_sees_entry() -> bool:  # a lookup never calls the upstream
            r = await client.post(f"{node_b.url}/v1/cache/lookup", json=chat(QUESTION))
            return bool(r.json()["result"] == "hit-exact")

        await _until(b_sees_entry, 5.0)  # written back by A into Redis, read by B
        b_again = await client.post(f"{node_b.url}/v1/chat/completions", json=chat(QUESTION))
        assert b_again.headers["x-cachefleet-tier"] == "l1"  # now hot in B's L1
        # A writes Redis and Milvus in the background: wait (without calling upstream) until
        # B finds A's vector; the first semantic hit comes from Milvus.
        first_semantic: dict[str, object] = {}

        async def b_finds_vector() -> bool:
            r = await client.post(f"{node_b.url}/v1/cache/lookup", json=chat(PARAPHRASE))
            first_semantic.update(r.json())
            return bool(r.json()["result"] == "hit-semantic")

        await _until(b_finds_vector, 5.0)
        assert first_semantic["tier"] == "l2"  # A's vector, found in Milvus
        semantic = await client.post(f"{node_b.url}/v1/chat/completions", json=chat(PARAPHRASE))
        assert semantic.headers["x-cachefleet-cache"] == "hit-semantic"
        assert semantic.headers["x-cachefleet-tier"] == "l1"  # promoted into B's L1
        assert await stub.calls() == 1

        removed = await client.post(
            f"{node_a.url}/v1/cache/invalidate", json={"namespace": "default"}
        )
        assert removed.status_code == 200
        counts = removed.json()["removed"]["default"]
        assert counts["store"] == 1
        assert counts["vectors"] == 1
        invalidated_at = time.monotonic()

        async def b_misses() -> bool:
            r = await client.post(f"{node_b.url}/v1/cache/lookup", json=chat(QUESTION))
            return r.json()["result"] == "miss"

        await _until(b_misses, 1.0)
        assert time.monotonic() - invalidated_at < 1.0
        stats = (await client.get(f"{node_b.url}/v1/cache/stats")).json()
        assert stats["l1"]["exact_entries"] == 0


async def test_namespace_switch_reaches_every_node(node_pair: list[NodeProcess]) -> None:
    node_a, node_b = node_pair
    async with httpx.AsyncClient(timeout=10) as client:
        await client.post(f"{node_b.url}/v1/chat/completions", json=chat(QUESTION))
        switched = await client.post(
            f"{node_a.url}/v1/cache/namespaces/switch",
            json={"name": "default", "namespace": "default-v2"},
        )
        assert switched.json()["active"] == {"default": "default-v2"}
        started = time.monotonic()

        async def b_switched() -> bool:
            r = await client.post(f"{node_b.url}/v1/cache/lookup", json=chat(QUESTION))
            return r.json()["namespace"] == "default-v2"

        await _until(b_switched, 1.0)
        assert time.monotonic() - started < 1.0
        after = await client.post(f"{node_b.url}/v1/chat/completions", json=chat(QUESTION))
        assert after.headers["x-cachefleet-namespace"] == "default-v2"
        assert (
            after.headers["x-cachefleet-cache"] == "miss"
        )  # nothing of the old namespace is served
        # a node started later sees the switch too (persisted in Redis)
        assert (await client.get(f"{node_b.url}/v1/cache/namespaces")).json()["active"] == {
            "default": "default-v2"
        }
