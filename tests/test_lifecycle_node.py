"""Node side of the model-version lifecycle (issue 5).

Entries remember their request; per-entry hit counts (fleet-wide); warm-up replays into a new
namespace; embedding migration (dual write, resumable re-embedding, coherent switch,
per-embedding thresholds); purge safety (`retired_only`) and `similar_to` invalidation.
Real redis-server, Milvus Lite, the real model and the stub upstream; node processes where
coherence between nodes matters.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from pymilvus import MilvusClient

from cachefleet_contract import keyspace
from cachefleet_node.config import ConfigError, load_node_config
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.keys import compute_keys
from cachefleet_node.tiers.entry_store import RedisEntryStore
from embedding_service import EmbeddingService
from node_harness import (
    TEST_DEADLINES,
    MilvusServer,
    Node,
    NodeFactory,
    NodeProcess,
    RedisServer,
    Stub,
    spawn_node,
    wait_ready,
)

ACTIVE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# The same model files under another id: a new vector space and collection, identical vectors
# (only one model is available offline).
MIGRATED_MODEL = "sentence-transformers/all-MiniLM-L6-v2-migrated"

QUESTIONS = [
    "What is the refund policy for annual plans?",
    "How do I rotate my API keys?",
    "Which regions is the service available in?",
    "How do I export my invoices as CSV?",
    "Can I change the billing email address?",
]
PARAPHRASE = "what's the refund policy on annual plans"


def chat(content: str, model: str = "gpt-4o-mini", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **fields}


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 30},
    }


def answer_of(response: httpx.Response) -> str:
    body = response.json()
    payload = body.get("response", body)
    return str(payload["choices"][0]["message"]["content"])


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> float:
    """Poll an async predicate; seconds until it held, or fail after the timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not reached within {timeout_s}s")


def milvus_count(uri: str, collection: str, expression: str) -> int:
    # as the nodes connect: no keepalive pings on idle connections (GOAWAY "too many pings")
    client = MilvusClient(
        uri=uri, timeout=10, grpc_options={"grpc.keepalive_permit_without_calls": False}
    )
    try:
        rows = client.query(collection, filter=expression, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0
    finally:
        client.close()


def migration(model_dir: Path) -> dict[str, Any]:
    return {"embedding_next": {"model_id": MIGRATED_MODEL, "model_dir": str(model_dir)}}


# ----------------------------------------------------------------------------- fixtures


@pytest_asyncio.fixture
async def fleet(
    tmp_path: Path,
    redis_server: RedisServer,
    milvus_server: MilvusServer,
    stub: Stub,
    model_dir: Path,
) -> AsyncIterator[Callable[..., Awaitable[list[NodeProcess]]]]:
    """Start cache node processes sharing one Redis and Milvus (and a collection prefix)."""
    await stub.reset()
    started: list[NodeProcess] = []
    prefix = "l" + uuid.uuid4().hex[:10]
    counter = itertools.count()

    async def spawn(count: int = 1, **extra: Any) -> list[NodeProcess]:
        config = {
            "upstream": {"base_url": stub.base_url},
            "redis": {"url": redis_server.url},
            "milvus": {"uri": milvus_server.uri, "collection_prefix": prefix},
            "embedding": {"model_dir": str(model_dir)},
            "namespaces": [{"name": "default"}],
            "deadlines": TEST_DEADLINES,
            **extra,
        }
        nodes = [spawn_node(config, tmp_path, f"node-{next(counter)}") for _ in range(count)]
        started.extend(nodes)
        await asyncio.gather(*(wait_ready(n) for n in nodes))
        return nodes

    yield spawn
    for node in started:
        node.stop()


@pytest_asyncio.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


# ------------------------------------------------------------ entries remember requests


async def test_entries_remember_their_canonical_request(node_factory: NodeFactory) -> None:
    node: Node = await node_factory(
        {
            "milvus": {"uri": None},
            "namespaces": [
                {"name": "small", "models": ["small-*"], "max_entry_bytes": 1024},
                {"name": "default"},
            ],
        }
    )
    response = await node.chat(QUESTIONS[0], user="end-user-7", temperature=0, stream=False)
    assert response.headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    [entry] = await node.runtime.engine.store.top_entries("default", 0, 10)
    # Answer-neutral fields (`user`, `stream`) are left out, like in the exact key.
    assert orjson.loads(entry.request or b"null") == chat(QUESTIONS[0], temperature=0)

    # An entry of format 1 (written before requests were kept) still decodes.
    legacy = orjson.loads(entry.to_bytes())
    legacy["v"] = 1
    del legacy["request"]
    decoded = CacheEntry.from_bytes(orjson.dumps(legacy))
    assert decoded.request is None
    assert decoded.answers == entry.answers
    assert decoded.entry_id == entry.entry_id

    # A request larger than the namespace's max_entry_bytes is not kept (the answer is).
    long_question = "Please summarise this: " + "lorem ipsum dolor sit amet " * 60
    stored = await node.client.post(
        "/v1/cache/store",
        json={"request": chat(long_question, model="small-1"), "response": completion("ok")},
    )
    assert stored.status_code == 201
    [big] = await node.runtime.engine.store.top_entries("small", 0, 10)
    assert big.request is None
    assert (
        answer_of(await node.client.post("/v1/cache/lookup", json=chat(long_question, "small-1")))
        == "ok"
    )


# ------------------------------------------------------------------------- warm-up


async def test_warm_replays_the_most_hit_requests_into_the_new_namespace(
    node_factory: NodeFactory, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_key = await node_factory(
        {
            "milvus": {"uri": None},
            "upstream": {"api_key_env": "CF_TEST_UNSET_KEY", "base_url": stub.base_url},
        }
    )
    refused = await without_key.client.post(
        "/v1/cache/warm",
        json={"from_namespace": "default", "name": "default", "offset": 0, "limit": 10},
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "upstream_key_missing"
    assert "CF_TEST_UNSET_KEY" in refused.json()["error"]["message"]

    monkeypatch.setenv("CF_TEST_WARM_KEY", "sk-warm-test")
    node = await node_factory(
        {
            "milvus": {"uri": None},
            "upstream": {"api_key_env": "CF_TEST_WARM_KEY", "base_url": stub.base_url},
        }
    )
    for question in QUESTIONS:
        assert (await node.chat(question)).headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    # Hits: QUESTIONS[0] four times, [1] three times, ... [4] never.
    for index, question in enumerate(QUESTIONS):
        for _ in range(4 - index):
            assert (await node.chat(question)).headers["x-cachefleet-cache"] == "hit-exact"
    await node.runtime.engine.flush_hits()
    ranked = await node.runtime.engine.store.top_entries("default", 0, 10)
    assert [e.prompt for e in ranked] == QUESTIONS

    switched = await node.client.post(
        "/v1/cache/namespaces/switch", json={"name": "default", "namespace": "default-v2"}
    )
    assert switched.json()["active"] == {"default": "default-v2"}
    calls = await stub.calls()

    batch = {"from_namespace": "default", "name": "default", "offset": 0, "limit": 3}
    started = time.monotonic()
    first = await node.client.post("/v1/cache/warm", json={**batch, "rate_per_s": 10.0})
    assert first.status_code == 200, first.text
    assert first.json() == {
        "processed": 3,
        "stored": 3,
        "skipped": 0,
        "failed": 0,
        "next_offset": 3,
        "total": 5,
        "done": False,
    }
    assert time.monotonic() - started >= 0.2  # three calls paced 0.1 s apart
    assert await stub.calls() == calls + 3
    last = (await stub.client.get(f"{stub.url}/_stub/last")).json()
    assert last["authorization"] == "Bearer sk-warm-test"  # the node's own credential
    assert "stream" not in last["body"]

    for index, question in enumerate(QUESTIONS):
        looked = await node.client.post("/v1/cache/lookup", json=chat(question))
        assert looked.json()["namespace"] == "default-v2"
        assert looked.json()["result"] == ("hit-exact" if index < 3 else "miss"), question

    # Idempotent: the same batch again finds every key in place and calls nobody.
    again = await node.client.post("/v1/cache/warm", json=batch)
    assert again.json() == {**first.json(), "stored": 0, "skipped": 3}
    assert await stub.calls() == calls + 3

    rest = await node.client.post("/v1/cache/warm", json={**batch, "offset": 3})
    assert rest.json() == {
        "processed": 2,
        "stored": 2,
        "skipped": 0,
        "failed": 0,
        "next_offset": 5,
        "total": 5,
        "done": True,
    }
    assert await stub.calls() == calls + 5
    metrics = (await node.client.get("/metrics")).text
    assert 'cachefleet_warm_requests_total{outcome="stored"} 5.0' in metrics

    bad = await node.client.post("/v1/cache/warm", json={**batch, "limit": 501})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "limit"
    unknown = await node.client.post("/v1/cache/warm", json={**batch, "name": "nope"})
    assert unknown.status_code == 404


async def test_hit_counts_are_fleet_wide(fleet: Any, redis_client: aioredis.Redis) -> None:
    node_a, node_b = await fleet(2)
    async with httpx.AsyncClient(timeout=10) as client:
        stored = await client.post(
            f"{node_a.url}/v1/cache/store",
            json={"request": chat(QUESTIONS[1]), "response": completion("rotate them")},
        )
        entry_id = stored.json()["entry_id"]
        await client.post(
            f"{node_a.url}/v1/cache/store",
            json={"request": chat(QUESTIONS[2]), "response": completion("everywhere")},
        )
        for node, times in ((node_a, 2), (node_b, 3)):
            for _ in range(times):
                hit = await client.post(f"{node.url}/v1/chat/completions", json=chat(QUESTIONS[1]))
                assert hit.headers["x-cachefleet-cache"] == "hit-exact"

    member = keyspace.entry_key("cf", "default", "default", entry_id)
    hits_key = keyspace.hits_key("cf", "default")

    async def counted() -> bool:
        score = await redis_client.zscore(hits_key, member)
        return score is not None and int(score) == 5

    await until(counted, 5.0)  # flushed by both nodes within about a second
    assert await redis_client.ttl(hits_key) > 0  # maxmemory-friendly, like the index
    ranking = await redis_client.zrevrange(hits_key, 0, -1)
    assert ranking[0].decode() == member
    assert len(ranking) == 2


# ------------------------------------------------------------------ embedding migration


async def test_writes_go_to_both_spaces_during_a_migration(
    node_factory: NodeFactory, milvus_server: MilvusServer, model_dir: Path
) -> None:
    node = await node_factory(migration(model_dir))
    described = (await node.client.get("/v1/cache/embedding")).json()
    active, upcoming = described["active"], described["next"]
    assert active["model_id"] == ACTIVE_MODEL
    assert upcoming["model_id"] == MIGRATED_MODEL
    assert active["space"] != upcoming["space"]
    assert active["collection"] != upcoming["collection"]

    assert (await node.chat(QUESTIONS[0])).headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    for collection in (active["collection"], upcoming["collection"]):
        assert milvus_count(milvus_server.uri, collection, 'namespace == "default"') == 1
    # Lookups keep using the active space until a switch.
    semantic = await node.client.post("/v1/cache/lookup", json=chat(PARAPHRASE))
    assert semantic.json()["result"] == "hit-semantic"

    unknown = await node.client.post("/v1/cache/embedding/switch", json={"space": "nope_384_0"})
    assert unknown.status_code == 409
    assert unknown.json()["error"]["code"] == "unknown_space"
    bad_cursor = await node.client.post(
        "/v1/cache/reembed", json={"namespace": "default", "cursor": "x:", "limit": 10}
    )
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["error"]["param"] == "cursor"

    plain = await node_factory()
    refused = await plain.client.post(
        "/v1/cache/reembed", json={"namespace": "default", "cursor": "", "limit": 10}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "no_embedding_next"
    assert (await plain.client.get("/v1/cache/embedding")).json()["next"] is None


async def test_a_failing_next_embedder_never_fails_or_slows_a_request(
    node_factory: NodeFactory, service: tuple[EmbeddingService, str]
) -> None:
    server, url = service
    node = await node_factory(
        {
            "embedding_next": {
                "kind": "remote",
                "model_id": MIGRATED_MODEL,
                "remote_url": url,
                "remote_protocol": "tei",
            }
        }
    )
    server.fail_status = 503  # the next model's pods are down
    assert (await node.chat(QUESTIONS[0])).headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    assert (await node.chat(PARAPHRASE)).headers["x-cachefleet-cache"] == "hit-semantic"

    server.fail_status = None
    server.delay_s = 2.0  # ... then they stall: the copy waits in the background
    started = time.perf_counter()
    miss = await node.chat(QUESTIONS[1])
    assert miss.status_code == 200
    assert miss.headers["x-cachefleet-cache"] == "miss"
    assert time.perf_counter() - started < 1.0
    server.release.set()
    await node.settle()
    metrics = (await node.client.get("/metrics")).text
    assert 'cachefleet_tier_errors_total{kind="error",tier="embedder-next"}' in metrics


VERBS = [
    "export",
    "import",
    "archive",
    "rename",
    "share",
    "print",
    "duplicate",
    "lock",
    "sync",
    "tag",
]
OBJECTS = [
    "invoice", "report", "dashboard", "contract", "playlist", "calendar", "spreadsheet",
    "photo album", "shipping label", "budget", "recipe", "timesheet", "user list",
    "price sheet", "project board", "expense claim", "meeting note", "survey", "ticket",
    "newsletter",
]  # fmt: skip
PLACES = [
    "in the mobile app", "from the web console", "on a shared drive", "with the API",
    "in offline mode", "for my whole team", "from the admin panel", "on a tablet",
    "in the desktop client", "through the command line",
]  # fmt: skip


def migration_prompts() -> list[str]:
    return [f"How do I {v} the {o} {p}?" for v in VERBS for o in OBJECTS for p in PLACES]


async def test_reembedding_is_resumable_across_node_processes(
    fleet: Any, redis_client: aioredis.Redis, milvus_server: MilvusServer, model_dir: Path
) -> None:
    prompts = migration_prompts()
    assert len(prompts) == 2000
    store = RedisEntryStore(redis_client, "cf")
    now = time.time()

    async def put(index: int, prompt: str) -> None:
        body = chat(prompt)
        keys = compute_keys(body, namespace="default", tenant="default")
        assert keys.semantic is not None
        await store.put(
            CacheEntry(
                entry_id=keys.exact,
                namespace="default",
                tenant="default",
                model="gpt-4o-mini",
                created_at=now,
                expires_at=now + 3600,
                answers=(orjson.dumps(completion(f"answer {index}")),),
                partition=keys.semantic.partition,
                prompt=keys.semantic.text,
                request=orjson.dumps(body),
            )
        )

    for start in range(0, len(prompts), 50):
        await asyncio.gather(*(put(i, prompts[i]) for i in range(start, start + 50)))

    [first] = await fleet(1, **migration(model_dir))
    processed = 0
    seconds = 0.0
    cursor = ""
    async with httpx.AsyncClient(timeout=120) as client:
        upcoming = (await client.get(f"{first.url}/v1/cache/embedding")).json()["next"]
        while processed < 800:  # interrupted part-way: the process dies, the cursor survives
            started = time.perf_counter()
            batch = await client.post(
                f"{first.url}/v1/cache/reembed",
                json={"namespace": "default", "cursor": cursor, "limit": 250},
            )
            seconds += time.perf_counter() - started
            assert batch.status_code == 200, batch.text
            body = batch.json()
            assert body["total"] == 2000
            assert not body["done"]
            processed += body["processed"]
            cursor = body["next_cursor"]
        first.process.kill()
        first.process.wait()
        partial = milvus_count(milvus_server.uri, upcoming["collection"], 'namespace == "default"')
        assert partial == processed

        [second] = await fleet(1, **migration(model_dir))
        done = False
        while not done:
            started = time.perf_counter()
            batch = await client.post(
                f"{second.url}/v1/cache/reembed",
                json={"namespace": "default", "cursor": cursor, "limit": 250},
            )
            seconds += time.perf_counter() - started
            assert batch.status_code == 200, batch.text
            body = batch.json()
            processed += body["processed"]
            cursor, done = body["next_cursor"], body["done"]
        assert processed == 2000
        assert cursor == ""
        rows = milvus_count(milvus_server.uri, upcoming["collection"], 'namespace == "default"')
        assert rows == 2000  # the same count as the namespace's entries
        print(
            f"\nre-embedding: {processed} entries in {seconds:.2f} s = {processed / seconds:.0f}/s"
        )

        # After the switch the re-embedded collection serves semantic hits.
        switched = await client.post(
            f"{second.url}/v1/cache/embedding/switch", json={"space": upcoming["space"]}
        )
        assert switched.json()["active"]["space"] == upcoming["space"]
        probe = "how can i archive the budget from the admin panel"
        hit = await client.post(f"{second.url}/v1/cache/lookup", json=chat(probe))
        assert hit.json()["result"] == "hit-semantic"
        assert hit.json()["tier"] == "l2"
        assert (
            answer_of(hit)
            == f"answer {prompts.index('How do I archive the budget from the admin panel?')}"
        )
        metrics = (await client.get(f"{second.url}/metrics")).text
        assert "cachefleet_reembedded_entries_total" in metrics


async def test_embedding_switch_reaches_every_node_with_the_same_hits(
    fleet: Any, redis_client: aioredis.Redis, milvus_server: MilvusServer, model_dir: Path
) -> None:
    node_a, node_b = await fleet(2, **migration(model_dir))
    probes = [PARAPHRASE, "how can I rotate my api keys", "Who won the football match yesterday?"]
    async with httpx.AsyncClient(timeout=10) as client:
        spaces = (await client.get(f"{node_b.url}/v1/cache/embedding")).json()
        old, new = spaces["active"], spaces["next"]
        for question in QUESTIONS:
            miss = await client.post(f"{node_a.url}/v1/chat/completions", json=chat(question))
            assert miss.headers["x-cachefleet-cache"] == "miss"

        async def dual_written() -> bool:
            return milvus_count(
                milvus_server.uri, new["collection"], 'namespace == "default"'
            ) == len(QUESTIONS)

        await until(dual_written, 10.0)

        async def lookups() -> list[tuple[str, float | None, str | None]]:
            found = []
            for probe in probes:
                body = (await client.post(f"{node_b.url}/v1/cache/lookup", json=chat(probe))).json()
                content = None if body["response"] is None else answer_of_body(body)
                found.append((body["result"], body["similarity"], content))
            return found

        before = await lookups()
        assert [r for r, _, _ in before] == ["hit-semantic", "hit-semantic", "miss"]

        switched = await client.post(
            f"{node_a.url}/v1/cache/embedding/switch", json={"space": new["space"]}
        )
        assert switched.status_code == 200
        assert switched.json() == {"active": new, "next": old, "loading": None}

        async def b_switched() -> bool:
            body = (await client.get(f"{node_b.url}/v1/cache/embedding")).json()
            return bool(body["active"]["space"] == new["space"])

        # pushed over the bus, not polled: well under a second on an idle machine; the bound
        # is loose so that a loaded CI machine does not fail it
        await until(b_switched, 5.0)
        after = await lookups()
        assert [(r, c) for r, _, c in after] == [(r, c) for r, _, c in before]
        for (_, s_before, _), (_, s_after, _) in zip(before, after, strict=True):
            assert (s_before is None) == (s_after is None)
            if s_before is not None and s_after is not None:
                assert abs(s_before - s_after) < 1e-4
        # L1 semantic was emptied: the first semantic hit now comes from the new collection.
        namespaces = (await client.get(f"{node_b.url}/v1/cache/namespaces")).json()
        assert namespaces["active"] == {"default": "default"}
        assert namespaces["embedding"]["active"]["space"] == new["space"]
        assert namespaces["entries"] == {"default": len(QUESTIONS)}
        assert (
            "cachefleet_embedding_switches_total 1.0"
            in (await client.get(f"{node_b.url}/metrics")).text
        )
        persisted = await redis_client.get(keyspace.embedding_active_key("cf"))
        assert persisted.decode() == new["space"]

        # A node started later agrees with the fleet, and switching back works the same way.
        [node_c] = await fleet(1, **migration(model_dir))
        body = (await client.get(f"{node_c.url}/v1/cache/embedding")).json()
        assert body["active"]["space"] == new["space"]
        back = await client.post(
            f"{node_c.url}/v1/cache/embedding/switch", json={"space": old["space"]}
        )
        assert back.json()["active"]["space"] == old["space"]

        async def a_back() -> bool:
            body = (await client.get(f"{node_a.url}/v1/cache/embedding")).json()
            return bool(body["active"]["space"] == old["space"])

        await until(a_back, 1.0)


async def test_the_next_model_is_loaded_and_dropped_live_keeping_embedded_vectors(
    tmp_path: Path, redis_server: RedisServer, stub: Stub, model_dir: Path
) -> None:
    """What an embedding migration does to a node in embedded mode (Milvus Lite in its data
    dir), driven by its config file alone as a ConfigMap volume is updated in place: the next
    model is loaded and later dropped by the same process (no restart, so nothing in the data
    dir is lost), and the re-embedded vectors keep serving hits after the switch."""
    import yaml

    await stub.reset()
    prefix = "m" + uuid.uuid4().hex[:10]
    config: dict[str, Any] = {
        "upstream": {"base_url": stub.base_url},
        "redis": {"url": redis_server.url, "key_prefix": prefix},
        "embedding": {"model_dir": str(model_dir)},
        "namespaces": [{"name": "default"}],
        "deadlines": TEST_DEADLINES,
    }
    node = spawn_node(config, tmp_path, "live")
    await wait_ready(node)
    path = tmp_path / "live.yaml"
    pid = node.process.pid

    def rewrite(**change: Any) -> None:
        data = {**yaml.safe_load(path.read_text()), **change}
        for key, value in change.items():
            if value is None:
                data.pop(key)
        path.write_text(yaml.safe_dump(data))

    try:
        async with httpx.AsyncClient(timeout=30) as client:

            async def embedding() -> dict[str, Any]:
                body: dict[str, Any] = (await client.get(f"{node.url}/v1/cache/embedding")).json()
                return body

            answers = []
            for question in QUESTIONS:
                miss = await client.post(f"{node.url}/v1/chat/completions", json=chat(question))
                assert miss.headers["x-cachefleet-cache"] == "miss"
                answers.append(answer_of(miss))
            old = (await embedding())["active"]
            assert (await embedding())["next"] is None

            # Cancelled before it ends: loaded, then dropped again.
            rewrite(embedding_next={"model_id": MIGRATED_MODEL, "model_dir": str(model_dir)})

            async def loaded() -> bool:
                found = await embedding()
                return bool(found["next"] and found["next"]["model_id"] == MIGRATED_MODEL)

            await until(loaded, 60.0)
            new = (await embedding())["next"]
            rewrite(embedding_next=None)

            async def dropped() -> bool:
                return (await embedding())["next"] is None

            await until(dropped, 20.0)
            assert (await embedding())["active"] == old

            # The migration: load, re-embed, switch, drop the old space.
            rewrite(embedding_next={"model_id": MIGRATED_MODEL, "model_dir": str(model_dir)})
            await until(loaded, 60.0)
            assert (await embedding())["next"] == new
            cursor, done = "", False
            while not done:
                batch = await client.post(
                    f"{node.url}/v1/cache/reembed",
                    json={"namespace": "default", "cursor": cursor, "limit": 100},
                )
                assert batch.status_code == 200, batch.text
                cursor, done = batch.json()["next_cursor"], batch.json()["done"]
            switched = await client.post(
                f"{node.url}/v1/cache/embedding/switch", json={"space": new["space"]}
            )
            assert switched.status_code == 200
            rewrite(
                embedding={"model_id": MIGRATED_MODEL, "model_dir": str(model_dir)},
                embedding_next=None,
            )
            await until(dropped, 20.0)
            found = await embedding()
            assert found["active"] == new
            semantic = await client.post(f"{node.url}/v1/cache/lookup", json=chat(PARAPHRASE))
            assert semantic.json()["result"] == "hit-semantic"
            assert answer_of_body(semantic.json()) == answers[0]
            assert node.process.poll() is None
            assert node.process.pid == pid

            # (the drop is logged once the old space is closed, just after it stops serving)
            async def logged() -> bool:
                log = node.log_path.read_text()
                return log.count('"embedding_next_dropped"') >= 2

            await until(logged, 20.0)
            log = node.log_path.read_text()
            assert log.count('"embedding_next_loaded"') == 2
            assert log.count('"embedding_next_dropped"') == 2
    finally:
        node.stop()


def answer_of_body(body: dict[str, Any]) -> str:
    return str(body["response"]["choices"][0]["message"]["content"])


async def test_thresholds_are_per_embedding_model(
    node_factory: NodeFactory, model_dir: Path
) -> None:
    strict_for_active = {
        "name": "default",
        "thresholds": {ACTIVE_MODEL: 0.999, MIGRATED_MODEL: 0.9},
        "verifier": {"enabled": False},  # its bonus would lift the paraphrase past 0.999
    }
    node = await node_factory(
        {"milvus": {"uri": None}, "namespaces": [strict_for_active], **migration(model_dir)}
    )
    await node.client.post(
        "/v1/cache/store", json={"request": chat(QUESTIONS[0]), "response": completion("30 days")}
    )
    await node.settle()  # the copy into the next space is written in the background
    looked = (await node.client.post("/v1/cache/lookup", json=chat(PARAPHRASE))).json()
    assert looked["result"] == "miss"  # similarity ~0.975 < 0.999 (active model's threshold)

    upcoming = (await node.client.get("/v1/cache/embedding")).json()["next"]
    switched = await node.client.post(
        "/v1/cache/embedding/switch", json={"space": upcoming["space"]}
    )
    assert switched.status_code == 200  # embedded mode: persisted under data_dir
    looked = (await node.client.post("/v1/cache/lookup", json=chat(PARAPHRASE))).json()
    assert looked["result"] == "hit-semantic"  # 0.9 for the migrated model
    assert answer_of_body(looked) == "30 days"

    for bad in (1.5, 0.5, 0.0):
        with pytest.raises(ConfigError, match="thresholds"):
            load_node_config(
                overrides={"namespaces": [{"name": "x", "thresholds": {ACTIVE_MODEL: bad}}]},
                environ={},
            )
    with pytest.raises(ConfigError, match="embedding_next"):
        load_node_config(overrides={"embedding_next": {"model_id": ACTIVE_MODEL}}, environ={})


# -------------------------------------------------------------------- purge safety


async def test_retired_only_purge_refuses_the_active_namespace_and_empties_a_retired_one(
    node_factory: NodeFactory,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    milvus_server: MilvusServer,
    model_dir: Path,
) -> None:
    node = await node_factory({"redis": {"url": redis_server.url}, **migration(model_dir)})
    spaces = (await node.client.get("/v1/cache/embedding")).json()
    collections = [spaces["active"]["collection"], spaces["next"]["collection"]]
    for index, question in enumerate(QUESTIONS[:3]):
        await node.chat(question, headers={"x-cachefleet-tags": "faq"} if index == 0 else {})
    await node.chat(QUESTIONS[0])  # a hit, so the namespace has hit counts and stats
    await node.settle()
    await node.runtime.engine.flush_hits()
    await node.runtime.engine.stats.flush(redis_client, "cf")
    await node.client.post(
        "/v1/cache/namespaces/switch", json={"name": "default", "namespace": "default-v2"}
    )
    for question in QUESTIONS[3:]:
        await node.chat(question)
    await node.settle()

    async def redis_keys_of(namespace: str) -> list[str]:
        """Keys of a cache namespace: entries, index, hit ranking, tag sets, counters."""
        found = []
        async for raw in redis_client.scan_iter(match="cf:*"):
            parts = raw.decode().split(":")
            kinds = {"e", "idx", "hits", "t", "stats"}
            if len(parts) >= 3 and parts[1] in kinds and parts[2] == namespace:
                found.append(raw.decode())
        return found

    old_keys = await redis_keys_of("default")
    assert {k.split(":")[1] for k in old_keys} == {"e", "idx", "hits", "t", "stats"}

    for body in (
        {"namespace": "default-v2", "retired_only": True},
        {"retired_only": True},  # every active namespace is in scope
    ):
        refused = await node.client.post("/v1/cache/invalidate", json=body)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "namespace_active"
    assert (await node.client.get("/v1/cache/namespaces")).json()["entries"] == {
        "default": 3,
        "default-v2": 2,
    }

    dry = await node.client.post(
        "/v1/cache/invalidate", json={"namespace": "default", "retired_only": True, "dry_run": True}
    )
    # L1 holds none of them: the switch dropped the previous namespace from every L1.
    assert dry.json()["removed"]["default"] == {
        "l1": 0, "store": 3, "vectors": 3, "vectors_next": 3,
    }  # fmt: skip
    assert sorted(await redis_keys_of("default")) == sorted(old_keys)

    purged = await node.client.post(
        "/v1/cache/invalidate", json={"namespace": "default", "retired_only": True}
    )
    assert purged.status_code == 200
    assert purged.json()["removed"]["default"] == dry.json()["removed"]["default"]
    assert await redis_keys_of("default") == []
    assert await redis_client.zscore(keyspace.namespaces_key("cf"), "default") is None
    for collection in collections:
        assert milvus_count(milvus_server.uri, collection, 'namespace == "default"') == 0
        assert milvus_count(milvus_server.uri, collection, 'namespace == "default-v2"') == 2
    assert (await node.client.get("/v1/cache/namespaces")).json()["entries"] == {
        "default": 0,
        "default-v2": 2,
    }
    for question in QUESTIONS[3:]:  # the active namespace is untouched
        assert (await node.chat(question)).headers["x-cachefleet-cache"] == "hit-exact"


async def test_every_key_expires_and_a_deleted_cache_leaves_no_fleet_state(
    node_factory: NodeFactory,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    model_dir: Path,
) -> None:
    """Issue 16: the fleet's state keys (switches, counters) carry a TTL like every other key,
    and `deleting_cache` (deletionPolicy: Delete) removes them."""
    node = await node_factory({"redis": {"url": redis_server.url}, **migration(model_dir)})
    for question in QUESTIONS[:2]:
        await node.chat(question)
    await node.chat(QUESTIONS[0])  # a hit: counters
    await node.settle()
    await node.runtime.engine.stats.flush(redis_client, "cf")
    switched = await node.client.post(
        "/v1/cache/namespaces/switch", json={"name": "default", "namespace": "default-v2"}
    )
    assert switched.status_code == 200, switched.text
    spaces = (await node.client.get("/v1/cache/embedding")).json()
    moved = await node.client.post(
        "/v1/cache/embedding/switch", json={"space": spaces["next"]["space"]}
    )
    assert moved.status_code == 200, moved.text
    await node.chat(QUESTIONS[2])
    await node.settle()
    await node.runtime.engine.stats.flush(redis_client, "cf")

    async def ttls() -> dict[str, int]:
        return {
            raw.decode(): int(await redis_client.ttl(raw))
            async for raw in redis_client.scan_iter(match="cf:*")
        }

    state = [keyspace.active_namespaces_key("cf"), keyspace.embedding_active_key("cf")]
    found = await ttls()
    for key in [
        *state,
        keyspace.stats_key("cf", "default"),
        keyspace.stats_key("cf", "default-v2"),
    ]:
        assert 0 < found[key] <= keyspace.FLEET_STATE_TTL_S, (key, found.get(key))
    assert [key for key, ttl in found.items() if ttl < 0] == []  # every key expires

    for namespace in ("default", "default-v2"):
        deleted = await node.client.post(
            "/v1/cache/invalidate", json={"namespace": namespace, "deleting_cache": True}
        )
        assert deleted.status_code == 200, deleted.text
    left = await ttls()
    assert [key for key in left if not key.startswith("cf:emb:")] == [], left
    assert [key for key, ttl in left.items() if ttl < 0] == []


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def test_similar_to_invalidation_removes_exactly_the_similar_entries(
    node_factory: NodeFactory,
) -> None:
    node = await node_factory(
        {
            "auth": {
                "api_keys": [
                    {"tenant": "acme", "key_sha256": _sha("key-acme")},
                    {"tenant": "globex", "key_sha256": _sha("key-globex")},
                    {"tenant": "ops", "key_sha256": _sha("key-ops"), "admin": True},
                ]
            }
        }
    )
    acme = {"authorization": "Bearer key-acme"}
    globex = {"authorization": "Bearer key-globex"}
    admin = {"authorization": "Bearer key-ops"}
    system = {"role": "system", "content": "You are a support bot for a bank."}
    similar = [  # one each in four partitions (context, model, tenant)
        (acme, chat("How do I reset my password?")),
        (
            acme,
            {
                "model": "gpt-4o-mini",
                "messages": [system, {"role": "user", "content": "How can I reset my password?"}],
            },
        ),
        (acme, chat("how do i reset my password", model="gpt-4o")),
        (globex, chat("I forgot my password, how do I change it?")),
    ]
    unrelated = [
        (acme, chat("What is the capital of France?")),
        (acme, chat("How do I reset my router?")),  # similarity ~0.46
        (globex, chat("How do I bake sourdough bread?")),
    ]
    for headers, request in similar + unrelated:
        stored = await node.client.post(
            "/v1/cache/store",
            json={"request": request, "response": completion("stored answer")},
            headers=headers,
        )
        assert stored.status_code == 201
    await node.settle()

    async def hits() -> list[bool]:
        found = []
        for headers, request in similar + unrelated:
            r = await node.client.post("/v1/cache/lookup", json=request, headers=headers)
            found.append(r.json()["result"] == "hit-exact")
        return found

    scope = {"text": "reset my password", "min_similarity": 0.8, "limit": 100}
    dry = await node.client.post(
        "/v1/cache/invalidate",
        json={"namespace": "default", "similar_to": scope, "dry_run": True},
        headers=admin,
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["removed"]["default"] == {"matched": 4, "l1": 4, "store": 4, "vectors": 4}
    assert await hits() == [True] * 7  # a dry run removes nothing

    # A tenant key is confined to its own tenant.
    own = await node.client.post(
        "/v1/cache/invalidate", json={"namespace": "default", "similar_to": scope}, headers=globex
    )
    assert own.json()["tenant"] == "globex"
    assert own.json()["removed"]["default"]["store"] == 1
    assert await hits() == [True, True, True, False, True, True, True]

    removed = await node.client.post(
        "/v1/cache/invalidate", json={"namespace": "default", "similar_to": scope}, headers=admin
    )
    assert removed.json()["removed"]["default"] == {"matched": 3, "l1": 3, "store": 3, "vectors": 3}
    assert await hits() == [False, False, False, False, True, True, True]
    again = await node.client.post(
        "/v1/cache/invalidate", json={"namespace": "default", "similar_to": scope}, headers=admin
    )
    assert again.json()["removed"]["default"]["matched"] == 0  # idempotent

    too_many = await node.client.post(
        "/v1/cache/invalidate",
        json={"namespace": "default", "similar_to": {**scope, "limit": 10_001}},
        headers=admin,
    )
    assert too_many.status_code == 400
    assert too_many.json()["error"]["param"] == "similar_to.limit"
