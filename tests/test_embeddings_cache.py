"""`POST /v1/embeddings` cached per input item, driven by the real `openai` SDK (sync and async)
against a node in front of the stub upstream; and the node's own embedding cache in front of
the real ONNX model, measured in the memory the OS counts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import openai
import orjson
import pytest

from cachefleet_node.core.embeddings import (
    read_upstream_answer,
    render_response,
    split_tokens,
)
from cachefleet_node.core.keys import embedding_entry_id
from cachefleet_node.demo.stub_upstream import stub_embedding
from cachefleet_node.embedders.cached import CachingEmbedder
from cachefleet_node.embedders.local import OnnxEmbedder, OnnxModel
from cachefleet_node.memory import MemoryBudget, read_rss
from cachefleet_node.server.embeddings import drain
from node_harness import Node, NodeFactory, RedisServer, Stub

MODEL = "text-embedding-3-small"


def clients(node: Node, key: str = "sk-test") -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    """The SDK's sync and async clients pointed at the node (no retries: one call is one)."""
    base = f"{node.url}/v1"
    return (
        openai.OpenAI(base_url=base, api_key=key, max_retries=0),
        openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0),
    )


async def embed(client: openai.AsyncOpenAI, inputs: Any, **fields: Any) -> Any:
    """One call; the raw response (headers) with its parsed body as `.body`."""
    raw = await client.embeddings.with_raw_response.create(model=MODEL, input=inputs, **fields)
    raw.body = raw.parse()
    return raw


async def embed_sync(client: openai.OpenAI, inputs: Any, **fields: Any) -> Any:
    """The sync client, off the event loop that runs the node."""

    def call() -> Any:
        raw = client.embeddings.with_raw_response.create(model=MODEL, input=inputs, **fields)
        raw.body = raw.parse()
        return raw

    return await asyncio.to_thread(call)


async def upstream_inputs(stub: Stub) -> list[Any]:
    """The `input` of every embeddings call the stub received."""
    return [
        body["input"] for body in (await stub.client.get(f"{stub.url}/_stub/embeddings")).json()
    ]


async def embedding_calls(stub: Stub) -> int:
    return int((await stub.client.get(f"{stub.url}/_stub/stats")).json()["embedding_calls"])


def vectors(response: Any) -> list[list[float]]:
    assert [item.index for item in response.body.data] == list(range(len(response.body.data)))
    return [item.embedding for item in response.body.data]


def expected(item: str | list[int], dimensions: int | None = None) -> list[float]:
    return list(stub_embedding(MODEL, item, dimensions).astype(np.float64))


def test_token_shares_add_up() -> None:
    assert split_tokens(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(split_tokens(97, [5, 13, 2, 40])) == 97
    assert split_tokens(0, [3, 4]) == [0, 0]
    assert split_tokens(3, [0, 0]) == [2, 1]


def test_only_complete_upstream_answers_are_read() -> None:
    one, two = stub_embedding(MODEL, "a", 8), stub_embedding(MODEL, "b", 8)
    good = render_response([one, two], "base64", MODEL, 3, 3)
    answer = read_upstream_answer(good, 2)
    assert answer is not None
    assert answer.prompt_tokens == 3
    assert [v.tolist() for v in answer.vectors] == [one.tolist(), two.tolist()]
    assert read_upstream_answer(good, 3) is None  # one vector per item sent
    listed = orjson.loads(render_response([one, two], "float", MODEL, 3, 3))
    listed["data"].reverse()  # order by `index`, not position
    swapped = read_upstream_answer(orjson.dumps(listed), 2)
    assert swapped is not None
    assert [v.tolist() for v in swapped.vectors] == [one.tolist(), two.tolist()]
    for broken in (
        {**listed, "data": [listed["data"][0], listed["data"][0]]},  # an index twice
        {**listed, "data": [{**listed["data"][0], "embedding": "not base64!"}, listed["data"][1]]},
        {**listed, "data": [{**listed["data"][0], "embedding": [1.0]}, listed["data"][1]]},
        {**listed, "data": [{**listed["data"][0], "embedding": ["1"]}, listed["data"][1]]},
        {"object": "list"},
    ):
        assert read_upstream_answer(orjson.dumps(broken), 2) is None
    assert read_upstream_answer(b"not json", 2) is None


def test_keys_separate_what_changes_the_vector() -> None:
    base = {"namespace": "ns", "tenant": "t", "model": MODEL, "dimensions": None, "item": "hi"}
    key = embedding_entry_id(**base)
    for change in (
        {"namespace": "other"},
        {"tenant": "other"},
        {"model": "text-embedding-3-large"},
        {"dimensions": 256},
        {"item": "hi "},
        {"item": (1, 2)},
    ):
        assert embedding_entry_id(**{**base, **change}) != key
    assert embedding_entry_id(**{**base, "item": (1, 2)}) == embedding_entry_id(
        **{**base, "item": (1, 2)}
    )


async def test_miss_then_hit_with_the_sync_and_async_sdk(node: Node, stub: Stub) -> None:
    sync, client = clients(node)
    first = await embed(client, "What is a semantic cache?")
    assert first.headers["x-cachefleet-cache"] == "miss"
    assert first.headers["x-cachefleet-hit-items"] == "0/1"
    assert vectors(first) == [expected("What is a semantic cache?")]
    assert first.body.usage.prompt_tokens > 0
    assert first.body.model == MODEL

    again = await embed(client, "What is a semantic cache?")
    assert again.headers["x-cachefleet-cache"] == "hit-exact"
    assert again.headers["x-cachefleet-tier"] == "l1"
    assert vectors(again) == vectors(first)
    # a full hit bills nothing: usage is what the upstream was paid for in this call
    assert again.body.usage.prompt_tokens == 0
    assert again.body.usage.total_tokens == 0
    assert int(again.headers["x-cachefleet-saved-tokens"]) == first.body.usage.prompt_tokens
    assert again.headers["x-request-id"].startswith("req_")

    from_sync = await embed_sync(sync, ["What is a semantic cache?"])  # a list of one: same item
    assert from_sync.headers["x-cachefleet-cache"] == "hit-exact"
    assert vectors(from_sync) == vectors(first)
    assert await embedding_calls(stub) == 1

    miss_sync = await embed_sync(sync, "and from the sync client")
    assert miss_sync.headers["x-cachefleet-cache"] == "miss"
    assert (await embed_sync(sync, "and from the sync client")).headers[
        "x-cachefleet-cache"
    ] == "hit-exact"
    assert await embedding_calls(stub) == 2
    sync.close()
    await client.close()


async def test_a_partial_batch_sends_only_the_misses_in_one_call(node: Node, stub: Stub) -> None:
    _, client = clients(node)
    await embed(client, ["alpha", "beta"])
    batch = ["gamma", "alpha", "delta", "beta", "gamma"]
    partial = await embed(client, batch)
    assert partial.headers["x-cachefleet-cache"] == "partial"
    assert partial.headers["x-cachefleet-hit-items"] == "2/5"
    assert vectors(partial) == [expected(item) for item in batch]
    # one upstream call for the misses, each once, in the order they came
    assert await upstream_inputs(stub) == [["alpha", "beta"], ["gamma", "delta"]]
    assert partial.body.usage.prompt_tokens == 2  # the stub's tokens for "gamma", "delta"

    whole = await embed(client, batch)
    assert whole.headers["x-cachefleet-cache"] == "hit-exact"
    assert vectors(whole) == vectors(partial)
    assert await embedding_calls(stub) == 2
    await client.close()


async def test_base64_and_float_are_one_entry_and_agree(node: Node, stub: Stub) -> None:
    _, client = clients(node)
    text = "vectors are stored as float32"
    as_float = await embed(client, text, encoding_format="float")
    as_base64 = await embed(client, text)  # the SDK asks for base64 and decodes it
    assert as_base64.headers["x-cachefleet-cache"] == "hit-exact"
    assert vectors(as_base64) == vectors(as_float) == [expected(text)]

    raw = await node.client.post(
        "/v1/embeddings", json={"model": MODEL, "input": text, "encoding_format": "base64"}
    )
    assert raw.headers["x-cachefleet-cache"] == "hit-exact"
    data = base64.b64decode(raw.json()["data"][0]["embedding"])
    assert np.array_equal(np.frombuffer(data, "<f4"), stub_embedding(MODEL, text, None))
    raw_float = await node.client.post(
        "/v1/embeddings", json={"model": MODEL, "input": text, "encoding_format": "float"}
    )
    assert raw_float.json()["data"][0]["embedding"] == expected(text)
    assert await embedding_calls(stub) == 1

    # base64 first, then float: the miss stored what a float request is served
    first = await embed(client, "the other way round")
    then = await embed(client, "the other way round", encoding_format="float")
    assert then.headers["x-cachefleet-cache"] == "hit-exact"
    assert vectors(then) == vectors(first)
    await client.close()


async def test_dimensions_are_separate_entries(node: Node, stub: Stub) -> None:
    _, client = clients(node)
    full = await embed(client, "shorter vectors")
    short = await embed(client, "shorter vectors", dimensions=256)
    assert short.headers["x-cachefleet-cache"] == "miss"
    assert len(vectors(full)[0]) == 1536
    assert vectors(short) == [expected("shorter vectors", 256)]
    again = await embed(client, "shorter vectors", dimensions=256)
    assert again.headers["x-cachefleet-cache"] == "hit-exact"
    assert vectors(again) == vectors(short)
    other = await embed(client, "shorter vectors", dimensions=512)
    assert other.headers["x-cachefleet-cache"] == "miss"
    assert await embedding_calls(stub) == 3
    await client.close()


async def test_token_arrays_are_items_of_their_own(node: Node, stub: Stub) -> None:
    _, client = clients(node)
    single = await embed(client, [1, 2, 3])
    assert single.headers["x-cachefleet-cache"] == "miss"
    assert vectors(single) == [expected([1, 2, 3])]
    batch = await embed(client, [[4, 5], [1, 2, 3]])
    assert batch.headers["x-cachefleet-cache"] == "partial"
    assert vectors(batch) == [expected([4, 5]), expected([1, 2, 3])]
    assert (await upstream_inputs(stub))[-1] == [[4, 5]]
    assert batch.body.usage.prompt_tokens == 2  # a token array's length is its count
    await client.close()


async def test_tenants_are_separate_partitions(
    node_factory: NodeFactory, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHEFLEET_UPSTREAM_API_KEY", "sk-upstream")
    keys = [
        {"tenant": name, "key_sha256": hashlib.sha256(f"sk-{name}".encode()).hexdigest()}
        for name in ("acme", "globex")
    ]
    node = await node_factory({"auth": {"api_keys": keys}})
    _, acme = clients(node, "sk-acme")
    _, globex = clients(node, "sk-globex")
    assert (await embed(acme, "tenant data")).headers["x-cachefleet-cache"] == "miss"
    assert (await embed(acme, "tenant data")).headers["x-cachefleet-cache"] == "hit-exact"
    assert (await embed(globex, "tenant data")).headers["x-cachefleet-cache"] == "miss"
    assert await embedding_calls(stub) == 2
    _, stranger = clients(node, "sk-unknown")
    with pytest.raises(openai.AuthenticationError):
        await embed(stranger, "tenant data")
    assert await embedding_calls(stub) == 2
    for client in (acme, globex, stranger):
        await client.close()


async def test_upstream_errors_are_relayed_and_never_cached(node: Node, stub: Stub) -> None:
    _, client = clients(node)
    legacy = "text-embedding-ada-002"
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as refused:
            await client.embeddings.create(model=legacy, input="x", dimensions=64)
        assert "does not support specifying dimensions" in refused.value.message
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.embeddings.create(model="no-such-model", input="x")
    assert unknown.value.code == "model_not_found"
    await stub.behave(fail_next=1, fail_status=503)
    with pytest.raises(openai.InternalServerError):
        await embed(client, ["kept", "failed"])
    assert (await embed(client, ["kept", "failed"])).headers["x-cachefleet-cache"] == "miss"
    assert await embedding_calls(stub) == 5

    # an error on the misses of a partial batch is relayed too, and stores nothing
    await stub.behave(fail_next=1, fail_status=500)
    response = await node.client.post(
        "/v1/embeddings", json={"model": MODEL, "input": ["kept", "new one"]}
    )
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "injected failure"
    assert response.headers["x-cachefleet-cache"] == "partial"
    after = await embed(client, ["kept", "new one"])
    assert after.headers["x-cachefleet-cache"] == "partial"
    assert vectors(after) == [expected("kept"), expected("new one")]
    await client.close()


async def test_cache_control_is_honoured(node: Node, stub: Stub) -> None:
    _, client = clients(node)
    no_store = {"cache-control": "no-store"}
    await embed(client, "not kept", extra_headers=no_store)
    assert (await embed(client, "not kept")).headers["x-cachefleet-cache"] == "miss"
    no_cache = await embed(client, "not kept", extra_headers={"cache-control": "no-cache"})
    assert no_cache.headers["x-cachefleet-cache"] == "bypass"
    assert no_cache.headers["x-cachefleet-bypass-reason"] == "no-cache"
    assert await embedding_calls(stub) == 3
    fresh = await embed(client, "not kept", extra_headers={"cache-control": "max-age=3600"})
    assert fresh.headers["x-cachefleet-cache"] == "hit-exact"
    await client.close()


async def test_what_the_cache_does_not_understand_passes_through_untouched(
    node: Node, stub: Stub
) -> None:
    _, client = clients(node)
    unknown = await embed(client, "new field", extra_body={"truncate": "end"})
    assert unknown.headers["x-cachefleet-cache"] == "bypass"
    assert unknown.headers["x-cachefleet-bypass-reason"] == "unknown-field"
    sent = (await stub.client.get(f"{stub.url}/_stub/embeddings")).json()[-1]
    assert sent["truncate"] == "end"
    assert (await embed(client, "new field", extra_body={"truncate": "end"})).headers[
        "x-cachefleet-cache"
    ] == "bypass"
    assert (await embed(client, "new field")).headers["x-cachefleet-cache"] == "miss"

    empty = await node.client.post("/v1/embeddings", json={"model": MODEL, "input": []})
    assert empty.status_code == 400  # the upstream's own answer
    assert empty.headers["x-cachefleet-bypass-reason"] == "invalid-request"
    method = await node.client.get("/v1/embeddings")
    assert method.status_code == 405
    assert "POST" in method.json()["error"]["message"]

    # the user field does not key: another end user reads the same entry
    user = await embed(client, "new field", user="someone")
    assert user.headers["x-cachefleet-cache"] == "hit-exact"
    await client.close()


async def test_hits_need_a_key_the_upstream_accepts(node: Node, stub: Stub) -> None:
    await stub.behave(valid_keys=["sk-good"])
    _, good = clients(node, "sk-good")
    _, bad = clients(node, "sk-bad")
    assert (await embed(good, "paid for")).headers["x-cachefleet-cache"] == "miss"
    assert (await embed(good, "paid for")).headers["x-cachefleet-cache"] == "hit-exact"
    with pytest.raises(openai.AuthenticationError):
        await embed(bad, "paid for")
    keyless = await node.client.post("/v1/embeddings", json={"model": MODEL, "input": "paid for"})
    assert keyless.status_code == 401
    assert keyless.headers["x-cachefleet-bypass-reason"] == "key-rejected"
    assert await embedding_calls(stub) == 1
    await good.close()
    await bad.close()


async def test_entries_are_shared_through_redis_and_a_dead_redis_still_answers(
    node_factory: NodeFactory, stub: Stub, redis_server: RedisServer
) -> None:
    fleet = {"redis": {"url": redis_server.url}}
    first = await node_factory(fleet)
    second = await node_factory(fleet)
    _, one = clients(first)
    _, two = clients(second)
    stored = await embed(one, ["shared a", "shared b"])
    await drain(first.runtime)
    shared = await embed(two, ["shared b", "shared a"])
    assert shared.headers["x-cachefleet-cache"] == "hit-exact"
    assert shared.headers["x-cachefleet-tier"] == "l2"
    assert vectors(shared) == vectors(stored)[::-1]

    redis_server.stop()
    down = await embed(two, ["shared a", "not cached yet"])
    assert down.headers["x-cachefleet-cache"] == "partial"  # L1 still serves what it holds
    assert "redis" in down.headers["x-cachefleet-bypass-reason"]
    assert vectors(down) == [expected("shared a"), expected("not cached yet")]
    cold = await embed(one, ["on a dead redis"])
    assert cold.headers["x-cachefleet-cache"] == "bypass"
    assert vectors(cold) == [expected("on a dead redis")]
    await drain(first.runtime)
    await drain(second.runtime)
    await one.close()
    await two.close()


@pytest.mark.parametrize("backend", ["redis", "local"])
async def test_stores_read_and_write_a_batch_in_one_call(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    import time

    import redis.asyncio as aioredis

    from cachefleet_node.core.entry import CacheEntry
    from cachefleet_node.tiers.entry_store import EntryStore, LocalEntryStore, RedisEntryStore

    store: EntryStore
    client = None
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        client = aioredis.from_url(server.url)
        store = RedisEntryStore(client, "cf")
    else:
        store = LocalEntryStore(tmp_path / "entries.sqlite")
    now = time.time()

    def entry(entry_id: str, tenant: str = "t", ttl: float = 60) -> CacheEntry:
        return CacheEntry(entry_id, "ns", tenant, MODEL, now, now + ttl, (b'{"a":1}',))

    await store.put_many([entry("a"), entry("b"), entry("c", "other"), entry("d", ttl=-1)])
    found = await store.get_many("ns", "t", ["b", "missing", "a", "c", "d"])
    assert [None if e is None else e.entry_id for e in found] == ["b", None, "a", None, None]
    assert await store.get_many("ns", "t", []) == []
    assert await store.count("ns") == 3
    await store.close()
    if client is not None:
        await client.aclose()


# --- the node's embedding cache in front of the real model, in RSS ---------------------------

CACHE_BUDGET = 1024 * 1024
CACHE_TEXTS = 4_000  # ~7.5x what the budget holds (about 2 KB an item)
#: ONNX Runtime arenas, the tokenizer and the allocator beside what the cache counts: generous
#: (measured: 1.3 MB of growth in all; unbounded, the cache alone would hold about 8 MB).
CACHE_SLACK = CACHE_BUDGET // 2 + 3 * 1024 * 1024


def fill_real_embedding_cache(model_dir: str, texts: int, budget_bytes: int) -> dict[str, Any]:
    """In a fresh process: embed `texts` distinct questions (batches of 32) through the ONNX
    model behind a bounded embedding cache; RSS growth from /proc after a warm-up."""

    async def run() -> dict[str, Any]:
        model = OnnxModel.load(Path(model_dir))
        onnx = OnnxEmbedder(model, "sentence-transformers/all-MiniLM-L6-v2")
        budget = MemoryBudget(budget_bytes)
        cache = CachingEmbedder(onnx, None, "cachefleet", 0, 10**9, 0.05, budget)

        def batch(first: int) -> list[str]:
            return [
                f"question {i} about topic {i % 97}, asked again?" for i in range(first, first + 32)
            ]

        try:
            for first in range(-320, 0, 32):  # warm-up: the runtime's arenas reach their size
                await onnx.embed(batch(first))
            start_rss = read_rss()
            peak = 0
            for first in range(0, texts, 32):
                await cache.embed(batch(first))
                peak = max(peak, read_rss() - start_rss)
            return {
                "peak_rss_growth_bytes": peak,
                "counted_bytes": budget.used_bytes,
                "misses": cache.misses,
                "evictions": cache.evictions,
            }
        finally:
            await cache.aclose()

    return asyncio.run(run())


def test_the_embedding_cache_in_front_of_the_model_stays_within_its_budget_in_rss(
    model_dir: Path,
) -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply(fill_real_embedding_cache, (str(model_dir), CACHE_TEXTS, CACHE_BUDGET))
    texts = CACHE_TEXTS // 32 * 32  # whole batches
    assert result["misses"] == texts  # every text was distinct: the model embedded it
    assert result["evictions"] > texts // 2  # the budget held a fraction of them
    assert result["counted_bytes"] <= CACHE_BUDGET
    assert result["peak_rss_growth_bytes"] <= CACHE_BUDGET + CACHE_SLACK, result
