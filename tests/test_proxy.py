"""The caching proxy end to end: real node, real model, Milvus Lite, stub upstream."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson

from cachefleet_node.config import NamespaceConfig
from node_harness import Node, NodeFactory, Stub

QUESTION = "How do I reset my password?"
PARAPHRASE = "how can I reset my password"
UNRELATED = "What is the boiling point of water at sea level?"


def content(response: Any) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def parse_sse(raw: bytes) -> list[Any]:
    """Events of an SSE body; asserts the framing is valid and ends with [DONE]."""
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-80:]
    events = []
    for block in raw.strip().split(b"\n\n"):
        assert block.startswith(b"data: "), block[:40]
        data = block[6:]
        events.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return events


def streamed_text(events: list[Any]) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or ""
        for event in events
        if event != "[DONE]"
        for choice in event["choices"]
    )


async def test_exact_hit_after_miss(node: Node, stub: Stub) -> None:
    first = await node.chat(QUESTION)
    assert first.status_code == 200
    assert first.headers["x-cachefleet-cache"] == "miss"
    assert first.headers["x-cachefleet-namespace"] == "default"
    await node.settle()
    second = await node.chat(QUESTION)
    assert second.headers["x-cachefleet-cache"] == "hit-exact"
    assert second.headers["x-cachefleet-tier"] == "l1"
    assert int(second.headers["age"]) >= 0
    assert content(second) == content(first)
    assert await stub.calls() == 1


async def test_semantic_hit_on_paraphrase(node: Node, stub: Stub) -> None:
    await node.chat(QUESTION)
    await node.settle()
    hit = await node.chat(PARAPHRASE)
    assert hit.headers["x-cachefleet-cache"] == "hit-semantic"
    similarity = float(hit.headers["x-cachefleet-similarity"])
    assert 0.85 <= similarity < 1.0
    assert QUESTION in content(hit)
    miss = await node.chat(UNRELATED)
    assert miss.headers["x-cachefleet-cache"] == "miss"
    assert await stub.calls() == 2


async def test_semantic_hit_from_milvus_when_l1_is_cold(node: Node, stub: Stub) -> None:
    await node.chat(QUESTION)
    await node.settle()
    node.runtime.engine.clear_l1()
    hit = await node.chat(PARAPHRASE)
    assert hit.headers["x-cachefleet-cache"] == "hit-semantic"
    assert hit.headers["x-cachefleet-tier"] == "l2"
    assert await stub.calls() == 1
    # promoted: the next paraphrase is served from L1
    again = await node.chat("how do i reset my password please")
    assert again.headers["x-cachefleet-cache"] == "hit-semantic"
    assert again.headers["x-cachefleet-tier"] == "l1"


async def test_threshold_override_is_clamped(node_factory: NodeFactory) -> None:
    # the verifier is off: its bonus would lift this paraphrase's score past 0.999
    namespace = {
        "name": "default",
        "similarity_threshold": 0.85,
        "min_threshold": 0.8,
        "verifier": {"enabled": False},
    }
    node = await node_factory({"namespaces": [namespace]})
    await node.chat(QUESTION)
    await node.settle()
    strict = await node.chat(PARAPHRASE, headers={"x-cachefleet-threshold": "0.999"})
    assert strict.headers["x-cachefleet-cache"] == "miss"
    assert strict.headers["x-cachefleet-threshold"] == "0.9990"
    loose = await node.chat(UNRELATED, headers={"x-cachefleet-threshold": "0.05"})
    assert loose.headers["x-cachefleet-threshold"] == "0.8000"  # clamped to min_threshold
    assert loose.headers["x-cachefleet-cache"] == "miss"
    bad = await node.chat(PARAPHRASE, headers={"x-cachefleet-threshold": "high"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-cachefleet-threshold"


async def test_tenants_from_api_keys_never_share_entries(
    node_factory: NodeFactory, stub: Stub
) -> None:
    keys = {"acme": "sk-acme-test", "globex": "sk-globex-test", "initech": "sk-initech-test"}
    node = await node_factory(
        {
            "auth": {
                "api_keys": [
                    {"tenant": t, "key_sha256": hashlib.sha256(k.encode()).hexdigest()}
                    for t, k in keys.items()
                ]
            }
        },
        environ={},
    )
    acme = {"authorization": f"Bearer {keys['acme']}"}
    globex = {"authorization": f"Bearer {keys['globex']}"}
    await node.chat(QUESTION, headers=acme)
    await node.settle()
    assert (await node.chat(QUESTION, headers=acme)).headers["x-cachefleet-cache"] == "hit-exact"
    # same text, other tenant: neither exact nor semantic, whatever the similarity
    other = await node.chat(QUESTION, headers=globex)
    assert other.headers["x-cachefleet-cache"] == "miss"
    # a client-chosen tenant header changes nothing
    initech = {"authorization": f"Bearer {keys['initech']}", "x-cachefleet-tenant": "acme"}
    spoof = await node.chat(PARAPHRASE, headers=initech)
    assert spoof.headers["x-cachefleet-cache"] == "miss"
    assert await stub.calls() == 3
    # the caller's key is not forwarded upstream when tenant keys are configured
    last = (await stub.client.get(f"{stub.url}/_stub/last")).json()
    assert last["authorization"] is None
    unknown = await node.chat(QUESTION, headers={"authorization": "Bearer nope"})
    assert unknown.status_code == 401
    assert unknown.json()["error"]["code"] == "invalid_api_key"
    missing = await node.chat(QUESTION)
    assert missing.status_code == 401


async def test_context_differences_never_hit(node: Node, stub: Stub) -> None:
    await node.chat(QUESTION)
    await node.settle()
    variants: list[dict[str, Any]] = [
        {"model": "gpt-4o"},
        {
            "messages": [
                {"role": "system", "content": "Answer like a pirate."},
                {"role": "user", "content": QUESTION},
            ]
        },
        {"tools": [{"type": "function", "function": {"name": "reset", "parameters": {}}}]},
        {
            "messages": [
                {"role": "user", "content": "I use the mobile app."},
                {"role": "assistant", "content": "Okay."},
                {"role": "user", "content": QUESTION},
            ]
        },
        {"max_tokens": 5},
    ]
    for fields in variants:
        response = await node.chat(QUESTION, **fields)
        assert response.headers["x-cachefleet-cache"] == "miss", fields
    assert await stub.calls() == 1 + len(variants)


async def test_streaming_miss_then_streamed_hit(node: Node, stub: Stub) -> None:
    body = {"stream": True, "stream_options": {"include_usage": True}}
    first = await node.chat(QUESTION, **body)
    assert first.headers["x-cachefleet-cache"] == "miss"
    assert first.headers["content-type"].startswith("text/event-stream")
    first_text = streamed_text(parse_sse(first.content))
    await node.settle()
    second = await node.chat(QUESTION, **body)
    assert second.headers["x-cachefleet-cache"] == "hit-exact"
    events = parse_sse(second.content)
    assert streamed_text(events) == first_text
    assert events[0]["object"] == "chat.completion.chunk"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["finish_reason"] for e in events[:-1] for c in e["choices"] if c["finish_reason"]]
    assert finishes == ["stop"]
    assert events[-2]["usage"]["completion_tokens"] > 0  # usage chunk before [DONE]
    # the streamed answer also serves a non-streaming request, as JSON
    plain = await node.chat(PARAPHRASE)
    assert plain.headers["x-cachefleet-cache"] == "hit-semantic"
    assert content(plain).strip() == first_text.strip()
    assert await stub.calls() == 1


async def test_upstream_errors_are_passed_through_and_never_cached(node: Node, stub: Stub) -> None:
    await stub.behave(fail_next=1, fail_status=503)
    failed = await node.chat(QUESTION)
    assert failed.status_code == 503
    assert failed.json()["error"]["message"] == "injected failure"
    await node.settle()
    retry = await node.chat(QUESTION)
    assert retry.status_code == 200
    assert retry.headers["x-cachefleet-cache"] == "miss"


async def test_partial_stream_is_never_cached(node: Node, stub: Stub) -> None:
    await stub.behave(break_stream_after=3)
    cut = await node.chat(QUESTION, stream=True)
    assert cut.headers["x-cachefleet-cache"] == "miss"
    blocks = cut.content.strip().split(b"\n\n")
    assert b"[DONE]" not in cut.content  # the client can tell the stream is incomplete
    assert orjson.loads(blocks[-1][6:])["error"]["code"] == "stream_interrupted"
    await node.settle()
    await stub.behave(break_stream_after=0)
    again = await node.chat(QUESTION)
    assert again.headers["x-cachefleet-cache"] == "miss"
    assert node.runtime.metrics.writes.labels("skipped-partial-stream")._value.get() == 1


async def test_cache_control_no_cache_no_store_max_age(node: Node, stub: Stub) -> None:
    stored = await node.chat(QUESTION, headers={"cache-control": "no-store"})
    assert stored.headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    assert (await node.chat(QUESTION)).headers["x-cachefleet-cache"] == "miss"  # nothing was stored
    await node.settle()
    refreshed = await node.chat(QUESTION, headers={"cache-control": "no-cache"})
    assert refreshed.headers["x-cachefleet-cache"] == "bypass"
    assert refreshed.headers["x-cachefleet-bypass-reason"] == "no-cache"
    await node.settle()
    hit = await node.chat(QUESTION)
    assert hit.headers["x-cachefleet-cache"] == "hit-exact"
    assert content(hit) == content(refreshed)  # no-cache still wrote the fresh answer
    await asyncio.sleep(1.1)
    young_only = await node.chat(QUESTION, headers={"cache-control": "max-age=1"})
    assert young_only.headers["x-cachefleet-cache"] == "miss"  # the entry is 1.1 s old
    await node.settle()
    fresh = await node.chat(PARAPHRASE, headers={"cache-control": "max-age=1"})
    assert fresh.headers["x-cachefleet-cache"] == "hit-semantic"  # the answer just stored
    bad = await node.chat(QUESTION, headers={"cache-control": "max-age=soon"})
    assert bad.status_code == 400
    assert await stub.calls() == 4


async def test_temperature_policies(node_factory: NodeFactory, stub: Stub) -> None:
    node = await node_factory(
        {
            "namespaces": [
                {"name": "strict", "models": ["gpt-4o"], "temperature_policy": "bypass"},
                {"name": "sampled", "models": ["gpt-4o-mini"], "temperature_policy": "sample:2"},
                {"name": "relaxed", "models": ["*"], "temperature_policy": "cache"},
            ]
        }
    )
    for _ in range(2):
        response = await node.chat(QUESTION, model="gpt-4o", temperature=0.7)
        assert response.headers["x-cachefleet-cache"] == "bypass"
        assert response.headers["x-cachefleet-bypass-reason"] == "temperature"
        await node.settle()
    deterministic = await node.chat(QUESTION, model="gpt-4o", temperature=0)
    await node.settle()
    assert deterministic.headers["x-cachefleet-cache"] == "miss"
    assert (await node.chat(QUESTION, model="gpt-4o", temperature=0)).headers[
        "x-cachefleet-cache"
    ] == "hit-exact"

    seen = set()
    for expected in ("miss", "miss"):
        response = await node.chat(QUESTION, temperature=0.9)
        assert response.headers["x-cachefleet-cache"] == expected
        assert response.headers["x-cachefleet-namespace"] == "sampled"
        seen.add(content(response))
        await node.settle()
    assert len(seen) == 2  # the stub varies answers at temperature > 0
    served = {content(await node.chat(QUESTION, temperature=0.9)) for _ in range(12)}
    assert served <= seen
    assert len(served) == 2

    await node.chat(UNRELATED, model="claude-x", temperature=1.2)
    await node.settle()
    assert (await node.chat(UNRELATED, model="claude-x", temperature=1.2)).headers[
        "x-cachefleet-cache"
    ] == "hit-exact"


async def test_ttl_expiry(node_factory: NodeFactory, stub: Stub) -> None:
    node = await node_factory({"namespaces": [{"name": "default", "ttl_s": 1}]})
    await node.chat(QUESTION)
    await node.settle()
    assert (await node.chat(QUESTION)).headers["x-cachefleet-cache"] == "hit-exact"
    assert (await node.chat(PARAPHRASE)).headers["x-cachefleet-cache"] == "hit-semantic"
    await asyncio.sleep(1.2)
    assert (await node.chat(QUESTION)).headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    node.runtime.engine.clear_l1()  # expiry holds in the shared tiers too
    await asyncio.sleep(1.2)
    assert (await node.chat(PARAPHRASE)).headers["x-cachefleet-cache"] == "miss"


async def test_tool_results_are_not_cached_by_default(node: Node) -> None:
    messages = [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18C, cloudy"},
    ]
    first = await node.chat(messages=messages)
    assert first.headers["x-cachefleet-cache"] == "bypass"
    assert first.headers["x-cachefleet-bypass-reason"] == "tool-result"


async def test_unknown_fields_and_caller_auth_reach_upstream_untouched(
    node: Node, stub: Stub
) -> None:
    response = await node.chat(
        QUESTION,
        headers={"authorization": "Bearer sk-caller"},
        reasoning_effort="low",
        x_vendor_extension={"nested": [1, 2.5, None]},
    )
    assert response.status_code == 200
    last = (await stub.client.get(f"{stub.url}/_stub/last")).json()
    assert last["body"]["reasoning_effort"] == "low"
    assert last["body"]["x_vendor_extension"] == {"nested": [1, 2.5, None]}
    assert last["authorization"] == "Bearer sk-caller"


async def test_upstream_unreachable_is_a_clean_502(node_factory: NodeFactory) -> None:
    from node_harness import free_port

    node = await node_factory({"upstream": {"base_url": f"http://127.0.0.1:{free_port()}/v1"}})
    response = await node.chat(QUESTION)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"


async def test_metrics_present_and_moving(node: Node) -> None:
    def sample(text: str, name: str) -> float:
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = (await node.client.get("/metrics")).text
    await node.chat(QUESTION)
    await node.settle()
    await node.chat(QUESTION)
    await node.chat(PARAPHRASE)
    after = (await node.client.get("/metrics")).text
    for name in (
        'cachefleet_requests_total{namespace="default",result="hit-exact",tier="l1"}',
        'cachefleet_requests_total{namespace="default",result="hit-semantic",tier="l1"}',
        'cachefleet_requests_total{namespace="default",result="miss",tier="none"}',
        'cachefleet_tier_duration_seconds_count{operation="embed",tier="embedder"}',
        'cachefleet_semantic_similarity_ratio_count{outcome="served"}',
        'cachefleet_tokens_saved_total{kind="completion",namespace="default"}',
        'cachefleet_cost_saved_dollars_total{namespace="default"}',
        'cachefleet_request_duration_seconds_count{result="hit-exact"}',
    ):
        assert sample(after, name) > sample(before, name), name
    assert "cachefleet_entries" in after


async def test_semantic_hits_explain_themselves_and_refusals_are_counted(
    node: Node, stub: Stub
) -> None:
    await node.chat(QUESTION)
    await node.settle()
    hit = await node.chat(PARAPHRASE)
    assert hit.headers["x-cachefleet-cache"] == "hit-semantic"
    assert (
        float(hit.headers["x-cachefleet-verifier"]) >= NamespaceConfig(name="d").verifier.min_score
    )
    assert hit.headers["x-cachefleet-guards"] == "negation,opposites,numbers,entities"

    await node.chat("Write something short")
    await node.settle()
    calls = await stub.calls()
    # cosine 0.94, no guard objects; the verifier sees one added word in an otherwise
    # identical request and refuses: the request goes upstream and says why
    near_miss = await node.chat("Write something else short")
    assert near_miss.headers["x-cachefleet-cache"] == "miss"
    assert near_miss.headers["x-cachefleet-vetoes"] == "verifier"
    assert await stub.calls() == calls + 1
    metrics = (await node.client.get("/metrics")).text
    assert 'cachefleet_guard_rejections_total{reason="verifier"} 1.0' in metrics
    assert 'cachefleet_verifier_score_ratio_count{outcome="refused"} 1.0' in metrics
    lookup = await node.client.post(
        "/v1/cache/lookup",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PARAPHRASE}]},
    )
    assert lookup.json()["verifier"] >= 0.55


async def test_every_hit_is_a_new_response_that_names_the_answer_it_reuses(node: Node) -> None:
    first = await node.chat(QUESTION)
    await node.settle()
    original = first.json()
    hits = [await node.chat(QUESTION), await node.chat(PARAPHRASE)]
    ids = {hit.json()["id"] for hit in hits}
    assert len(ids) == 2
    assert original["id"] not in ids
    request_ids = {hit.headers["x-request-id"] for hit in hits}
    assert len(request_ids) == 2
    for hit in hits:
        body = hit.json()
        assert hit.headers["x-cachefleet-original-id"] == original["id"]
        assert body["created"] >= original["created"]
        assert body["choices"] == original["choices"]
        usage = body["usage"]
        assert usage["prompt_tokens"] == original["usage"]["prompt_tokens"]
        # every prompt token reported as cached, the way OpenAI reports its prompt cache
        assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"]
    streamed = await node.chat(QUESTION, stream=True)
    events = parse_sse(streamed.content)
    stream_ids = {event["id"] for event in events if isinstance(event, dict)}
    assert len(stream_ids) == 1  # one response, one id across its chunks
    assert original["id"] not in stream_ids


async def test_a_streamed_miss_is_stored_with_usage_the_client_did_not_ask_for(
    node: Node, stub: Stub
) -> None:
    streamed = await node.chat(QUESTION, stream=True)
    events = [event for event in parse_sse(streamed.content) if isinstance(event, dict)]
    assert events
    assert all(event["choices"] for event in events)  # no usage-only chunk for this client
    last = (await stub.client.get(f"{stub.url}/_stub/last")).json()
    assert last["body"]["stream_options"] == {"include_usage": True}  # asked on its behalf
    await node.settle()
    hit = await node.chat(QUESTION)
    assert hit.headers["x-cachefleet-cache"] == "hit-exact"
    assert hit.json()["usage"]["completion_tokens"] > 0  # the replay reports real usage
    asked = await node.chat(
        "A different question, streamed with usage",
        stream=True,
        stream_options={"include_usage": True},
    )
    usage_events = [e for e in parse_sse(asked.content) if isinstance(e, dict) and not e["choices"]]
    assert len(usage_events) == 1  # a client that asks still gets it
