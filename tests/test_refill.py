"""A node started on stored data refills its in-process semantic tier in the background
(issue 17): it serves a semantic hit from the durable tier on its first paraphrase query,
its L1 holds the stored vectors after the refill (the coherence reset at subscription does
not wipe them), and a later reset is followed by another refill. A node that starts while
Milvus is down serves without it and refills once Milvus is back. The scan reads every live
row once, newest first, and a refill stops at the memory budget without evicting.

Real nodes in process, a real redis-server and Milvus server, the real model, the stub.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from cachefleet_bench.servers import free_port, spawn_milvus, stop
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.memory import MemoryBudget
from cachefleet_node.refill import refill
from cachefleet_node.tiers.l1_semantic import SemanticIndex
from cachefleet_node.tiers.milvus_store import MilvusVectorStore, VectorRow
from node_harness import MilvusServer, Node, NodeFactory, RedisServer

DIM = 8
LIVE = 300

QUESTIONS = [
    f"{template} {subject}?"
    for template in (
        "How do I cook",
        "What is the best way to store",
        "Which wine pairs well with",
        "How do I freeze",
    )
    for subject in (
        "salmon",
        "chicken",
        "tofu",
        "rice",
        "pasta",
        "lentils",
        "quinoa",
        "shrimp",
        "spinach",
        "mushrooms",
    )
]


def chat(content: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}


def completion(question: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-refill",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"answer to {question}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def near(question: str) -> str:
    """A paraphrase: lower case, no question mark, a polite tail."""
    return question.lower().rstrip("?") + " please"


async def l1_vectors(node: Node) -> int:
    stats = (await node.client.get("/v1/cache/stats")).json()
    return int(stats["l1"]["semantic_entries"])


async def wait_for_l1(node: Node, rows: int, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (held := await l1_vectors(node)) < rows:
        assert time.monotonic() < deadline, f"L1 holds {held} of {rows} vectors"
        await asyncio.sleep(0.2)


async def test_a_node_on_stored_data_hits_at_once_and_refills_its_l1(
    node_factory: NodeFactory, redis_server: RedisServer
) -> None:
    shared = {"redis": {"url": redis_server.url}, "namespaces": [{"name": "default"}]}
    first = await node_factory(shared)
    for question in QUESTIONS:
        stored = await first.client.post(
            "/v1/cache/store", json={"request": chat(question), "response": completion(question)}
        )
        assert stored.json()["outcome"] == "stored", stored.text

    second = await node_factory(shared)  # a restarted (or new) node: its L1 starts empty
    first_lookup = (
        await second.client.post("/v1/cache/lookup", json=chat(near(QUESTIONS[0])))
    ).json()
    assert first_lookup["result"] == "hit-semantic", first_lookup
    assert (
        first_lookup["response"]["choices"][0]["message"]["content"] == f"answer to {QUESTIONS[0]}"
    )

    await wait_for_l1(second, len(QUESTIONS))
    await asyncio.sleep(1.0)  # the coherence subscription's reset came before, not after
    assert await l1_vectors(second) >= len(QUESTIONS)
    # Served from the refilled L1 (its rows carry no prompt: judged on the stored entry).
    for question in QUESTIONS[1:6]:
        body = (await second.client.post("/v1/cache/lookup", json=chat(near(question)))).json()
        assert (body["result"], body["tier"]) == ("hit-semantic", "l1"), body
        assert body["response"]["choices"][0]["message"]["content"] == f"answer to {question}"

    second.runtime.engine.clear_l1()  # what a coherence reset does: refilled again
    await wait_for_l1(second, len(QUESTIONS))


async def test_milvus_down_at_start_the_node_serves_and_refills_once_it_is_back(
    node_factory: NodeFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    port, data_dir = free_port(), tmp_path / "milvus"
    milvus = spawn_milvus(port, data_dir)
    try:
        shared = {
            "redis": {"url": redis_server.url},
            "namespaces": [{"name": "default"}],
            "milvus": {"uri": f"http://127.0.0.1:{port}", "collection_prefix": "down"},
        }
        first = await node_factory(shared)
        questions = QUESTIONS[:10]
        for question in questions:
            stored = await first.client.post(
                "/v1/cache/store",
                json={"request": chat(question), "response": completion(question)},
            )
            assert stored.json()["outcome"] == "stored", stored.text
        vectors = first.runtime.engine.spaces.active.vectors
        assert vectors is not None
        deadline = time.monotonic() + 60
        while await vectors.count("default") < len(questions):
            assert time.monotonic() < deadline, "the vectors never reached Milvus"
            await asyncio.sleep(0.2)
        stop(milvus)

        second = await node_factory(shared)  # starts while Milvus is down
        assert (await second.client.get("/readyz")).json()["tiers"]["milvus"]["connected"] is False
        exact = (await second.client.post("/v1/cache/lookup", json=chat(questions[0]))).json()
        assert exact["result"] == "hit-exact", exact
        assert await l1_vectors(second) == 0

        milvus = spawn_milvus(port, data_dir)  # back on its data: the node reconnects, refills
        await wait_for_l1(second, len(questions))
        body = (await second.client.post("/v1/cache/lookup", json=chat(near(questions[1])))).json()
        assert (body["result"], body["tier"]) == ("hit-semantic", "l1"), body
    finally:
        stop(milvus)


def stored_rows(now: float) -> list[VectorRow]:
    """LIVE live rows, one every 7 s going back from `now`, and 20 expired ones."""
    vectors = np.random.default_rng(17).standard_normal((LIVE + 20, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        VectorRow(
            CacheEntry(
                entry_id=f"e{i}",
                namespace="support",
                tenant="acme",
                model="gpt-4o-mini",
                created_at=now - 7 * i - 1,
                expires_at=now + 3600 if i < LIVE else now - 1,
                answers=(b"{}",),
                partition="p" if i % 2 else "q",
                prompt=f"question {i}",
                tags=("billing", "eu") if i % 3 == 0 else (),
            ),
            vectors[i],
        )
        for i in range(LIVE + 20)
    ]


async def test_the_scan_reads_live_rows_newest_first_and_a_refill_stops_at_the_budget(
    milvus_server: MilvusServer,
) -> None:
    store = MilvusVectorStore(milvus_server.uri, None, "refill" + uuid.uuid4().hex[:12], DIM)
    await asyncio.wait_for(store.connect(), 60)
    try:
        now = time.time()
        await store.insert(stored_rows(now))
        deadline = time.monotonic() + 60
        while (await store.count("support")) < LIVE:
            assert time.monotonic() < deadline, "the inserted rows never became visible"
            await asyncio.sleep(0.2)

        pages = [page async for page in store.scan_recent(time.time(), batch=16)]
        read = [(page, i) for page in pages for i in range(len(page))]
        assert sorted(page.entry_ids[i] for page, i in read) == sorted(f"e{i}" for i in range(LIVE))
        assert all(len(page) <= 16 for page in pages)
        for newer, older in itertools.pairwise(pages):
            assert newer.created_at.min() > older.created_at.max()
        # Each row's columns decoded as written (vector, partition, tags, times).
        written = {row.entry.entry_id: row for row in stored_rows(now)}
        for page, i in read:
            entry = written[page.entry_ids[i]].entry
            assert (page.namespaces[i], page.tenants[i], page.partitions[i], page.tags[i]) == (
                entry.namespace,
                entry.tenant,
                entry.partition,
                entry.tags,
            )
            assert abs(page.created_at[i] - entry.created_at) < 1e-3
            assert abs(page.expires_at[i] - entry.expires_at) < 1e-3
            assert np.array_equal(page.vectors[i], written[page.entry_ids[i]].vector)
        page, i = next((page, i) for page, i in read if page.entry_ids[i] == "e3")
        assert (page.partitions[i], page.tags[i]) == ("p", ("billing", "eu"))
        probe = page.vectors[i]

        roomy = SemanticIndex(DIM, None, MemoryBudget(1 << 40))
        result = await refill(roomy, store)
        assert result is not None
        assert (result.rows, result.read, result.full, len(roomy)) == (LIVE, LIVE, False, LIVE)
        held = roomy.search("p", probe, 1, time.time())
        assert held[0].meta.entry_id == "e3"
        assert held[0].meta.prompt is None  # judged on the stored entry's prompt

        budget = MemoryBudget(roomy.bytes_used // 3)
        tight = SemanticIndex(DIM, None, budget)
        result = await refill(tight, store)
        assert result is not None
        assert result.full
        assert 0 < len(tight) < LIVE
        kept = tight.similar_where(probe, -1.0, lambda _: True)
        assert {c.meta.entry_id for c in kept} == {f"e{i}" for i in range(len(tight))}  # newest
        assert tight.evictions == 0
        assert budget.used_bytes <= budget.max_bytes
    finally:
        await store.close()
