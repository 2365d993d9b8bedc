"""The Responses API through the node, with the real `openai` SDK against the independent
stub: stateless requests (`store: false`) are cached and replayed (JSON and the typed event
stream the SDK parses); every other kind bypasses by the documented rules."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from typing import Any

import openai
import pytest
from client_drivers import CHAT_MODEL
from client_matrix import PARAPHRASE, QUESTION, WEATHER_TOOL
from openai_stub import GOOD_KEY, WRONG_KEY, OpenAIStub

from node_harness import Node, NodeFactory, free_port

CACHE = "x-cachefleet-cache"
FUNCTION_TOOL = {"type": "function", **WEATHER_TOOL["function"]}  # the flat form


def sdk(node: Node, key: str = GOOD_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{node.url}/v1", api_key=key, max_retries=0)


async def create(node: Node, text: str, *, key: str = GOOD_KEY, **fields: Any) -> Any:
    """A non-streamed call: (the parsed response, the raw response with its headers)."""
    params: dict[str, Any] = {"model": CHAT_MODEL, "input": text, "store": False, **fields}
    raw = await sdk(node, key).responses.with_raw_response.create(**params)
    return raw.parse(), raw


async def test_miss_then_exact_and_paraphrase_hits(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    stub = openai_stub[0]
    first, raw = await create(matrix_node, QUESTION, instructions="Answer briefly.")
    assert raw.headers[CACHE] == "miss"
    assert QUESTION in first.output_text
    await matrix_node.settle()

    again, raw = await create(matrix_node, QUESTION, instructions="Answer briefly.")
    assert raw.headers[CACHE] == "hit-exact"
    assert again.output_text == first.output_text
    assert again.id.startswith("resp_")
    assert again.id != first.id
    assert again.output[0].id != first.output[0].id
    assert raw.headers["x-cachefleet-original-id"] == first.id
    assert again.usage.input_tokens == first.usage.input_tokens
    assert again.usage.input_tokens_details.cached_tokens == first.usage.input_tokens

    similar, raw = await create(matrix_node, PARAPHRASE, instructions="Answer briefly.")
    assert raw.headers[CACHE] == "hit-semantic"
    assert similar.output_text == first.output_text

    _, raw = await create(matrix_node, QUESTION, instructions="Answer at length.")
    assert raw.headers[CACHE] == "miss"  # other instructions: another partition
    assert stub.calls["responses"] == 2


async def test_a_chat_answer_never_serves_a_response(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    await matrix_node.chat(QUESTION, headers={"authorization": f"Bearer {GOOD_KEY}"})
    await matrix_node.settle()
    _, raw = await create(matrix_node, QUESTION)
    assert raw.headers[CACHE] == "miss"


async def test_streamed_miss_is_recorded_and_replayed_to_the_sdk(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    stub = openai_stub[0]
    client = sdk(matrix_node)
    async with client.responses.stream(model=CHAT_MODEL, input=QUESTION, store=False) as stream:
        relayed = [event async for event in stream]
        recorded = await stream.get_final_response()
    assert stub.calls["responses-stream"] == 1
    assert relayed[-1].type == "response.completed"
    await matrix_node.settle()

    async with client.responses.stream(model=CHAT_MODEL, input=QUESTION, store=False) as stream:
        replayed = [event async for event in stream]
        final = await stream.get_final_response()
    assert final.output_text == recorded.output_text
    assert final.id != recorded.id
    assert [event.sequence_number for event in replayed] == list(range(len(replayed)))
    kinds = [event.type for event in replayed]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    deltas = [event.delta for event in replayed if event.type == "response.output_text.delta"]
    assert "".join(deltas) == recorded.output_text
    assert final.usage.input_tokens_details.cached_tokens == recorded.usage.input_tokens
    assert stub.calls["responses"] == 1

    raw = await client.responses.with_raw_response.create(
        model=CHAT_MODEL, input=QUESTION, store=False, stream=True
    )
    assert raw.headers[CACHE] == "hit-exact"
    assert [event.type async for event in raw.parse()][-1] == "response.completed"
    plain, raw = await create(matrix_node, QUESTION)  # a stream's answer serves JSON too
    assert (raw.headers[CACHE], plain.output_text) == ("hit-exact", recorded.output_text)
    assert stub.calls["responses"] == 1


async def test_function_calls_are_cached_and_replayed(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    stub = openai_stub[0]
    question = "What is the weather in Paris?"
    first, raw = await create(matrix_node, question, tools=[FUNCTION_TOOL])
    assert raw.headers[CACHE] == "miss"
    call = first.output[0]
    assert call.type == "function_call"
    await matrix_node.settle()

    client = sdk(matrix_node)
    async with client.responses.stream(
        model=CHAT_MODEL, input=question, store=False, tools=[FUNCTION_TOOL]
    ) as stream:
        final = await stream.get_final_response()
    replayed = final.output[0]
    assert (replayed.type, replayed.name) == ("function_call", call.name)
    assert (replayed.arguments, replayed.call_id) == (call.arguments, call.call_id)
    assert stub.calls["responses"] == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        pytest.param({"store": None}, "store", id="store-default"),
        pytest.param({"store": True}, "store", id="store-true"),
        pytest.param({"background": True}, "background", id="background"),
        pytest.param({"conversation": "conv_abc"}, "conversation", id="conversation"),
        pytest.param({"tools": [{"type": "web_search"}]}, "server-tool", id="web-search"),
        pytest.param(
            {"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]},
            "server-tool",
            id="code-interpreter",
        ),
        pytest.param(
            {"prompt": {"id": "pmpt_abc", "version": "2"}}, "prompt-template", id="prompt"
        ),
        pytest.param(
            {
                "input": [
                    {"type": "item_reference", "id": "msg_abc"},
                    {"role": "user", "content": QUESTION},
                ]
            },
            "input-item",
            id="item-reference",
        ),
    ],
)
async def test_bypass_rules(
    openai_stub: tuple[OpenAIStub, str],
    matrix_node: Node,
    fields: dict[str, Any],
    reason: str,
) -> None:
    stub = openai_stub[0]
    body: dict[str, Any] = {"model": CHAT_MODEL, "input": QUESTION, "store": False, **fields}
    if body["store"] is None:
        del body["store"]  # the SDK's default: the field is not sent
    for _ in range(2):
        raw = await sdk(matrix_node).responses.with_raw_response.create(**body)
        assert raw.headers[CACHE] == "bypass"
        assert raw.headers["x-cachefleet-bypass-reason"] == reason
        assert raw.headers["x-cachefleet-namespace"]
        await matrix_node.settle()
    assert stub.calls["responses"] == 2
    # counted like a chat bypass: the namespace's stats, the requests and bypass metrics
    namespace = raw.headers["x-cachefleet-namespace"]
    stats = (await matrix_node.client.get("/v1/cache/stats")).json()["namespaces"][namespace]
    assert (stats["node"]["requests"], stats["node"]["bypasses"]) == (2, 2)
    registry = matrix_node.runtime.metrics.registry
    requests = {"namespace": namespace, "result": "bypass", "tier": "none"}
    assert registry.get_sample_value("cachefleet_requests_total", requests) == 2
    assert registry.get_sample_value("cachefleet_bypass_total", {"reason": reason}) == 2


async def test_previous_response_id_bypasses(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    stored, _ = await create(matrix_node, QUESTION, store=True)
    for _ in range(2):
        follow, raw = await create(matrix_node, "And then?", previous_response_id=stored.id)
        assert raw.headers["x-cachefleet-bypass-reason"] == "previous-response"
        assert follow.output_text
    retrieved = await sdk(matrix_node).responses.retrieve(stored.id)  # passes through
    assert retrieved.id == stored.id
    assert openai_stub[0].calls["responses"] == 3


async def test_bad_key_refused_on_a_hit(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    await create(matrix_node, QUESTION)
    await matrix_node.settle()
    with pytest.raises(openai.AuthenticationError):
        await create(matrix_node, QUESTION, key=WRONG_KEY)
    with pytest.raises(openai.AuthenticationError):
        await sdk(matrix_node, WRONG_KEY).responses.create(
            model=CHAT_MODEL, input=QUESTION, store=False, stream=True
        )
    assert openai_stub[0].calls["responses"] == 1


async def test_identical_concurrent_requests_share_one_upstream_call(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    """Single flight: identical requests that arrive while one is upstream share its answer."""
    stub = openai_stub[0]
    stub.latency = 2.0  # the upstream answers after every request has arrived
    answers = await asyncio.gather(*(create(matrix_node, QUESTION) for _ in range(20)))
    assert stub.calls["responses"] == 1
    assert len({parsed.output_text for parsed, _ in answers}) == 1
    assert QUESTION in answers[0][0].output_text
    assert len({parsed.id for parsed, _ in answers}) == 20  # each answer has its own id
    served = Counter(
        (raw.headers[CACHE], raw.headers.get("x-cachefleet-tier")) for _, raw in answers
    )
    assert served == {("miss", None): 1, ("hit-exact", "inflight"): 19}


async def test_tenant_keys_partition_responses(
    node_factory: NodeFactory,
    openai_stub: tuple[OpenAIStub, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With tenant keys, one tenant's entry never answers another's key; an unknown or missing
    key is refused by the node without an upstream call."""
    stub, url = openai_stub
    monkeypatch.setenv("CF_TEST_RESPONSES_UPSTREAM_KEY", GOOD_KEY)  # the node's own credential
    keys = {"acme": "sk-tenant-acme", "globex": "sk-tenant-globex", "initech": "sk-tenant-ini"}
    tenants = [
        {"tenant": tenant, "key_sha256": hashlib.sha256(key.encode()).hexdigest()}
        for tenant, key in keys.items()
    ]
    node = await node_factory(
        {
            "upstream": {"base_url": url, "api_key_env": "CF_TEST_RESPONSES_UPSTREAM_KEY"},
            "auth": {"api_keys": tenants},
        }
    )
    acme, raw = await create(node, QUESTION, key=keys["acme"])
    assert raw.headers[CACHE] == "miss"
    await node.settle()
    _, raw = await create(node, QUESTION, key=keys["acme"])
    assert (raw.headers[CACHE], raw.headers["x-cachefleet-original-id"]) == ("hit-exact", acme.id)

    # neither an exact nor a semantic hit across tenants, JSON or streamed
    globex, raw = await create(node, QUESTION, key=keys["globex"])
    assert raw.headers[CACHE] == "miss"
    raw = await sdk(node, keys["initech"]).responses.with_raw_response.create(
        model=CHAT_MODEL, input=PARAPHRASE, store=False, stream=True
    )
    assert raw.headers[CACHE] == "miss"
    assert [event.type async for event in raw.parse()][-1] == "response.completed"
    assert stub.calls["responses"] == 3
    await node.settle()
    _, raw = await create(node, QUESTION, key=keys["globex"])  # its own entry now
    assert raw.headers[CACHE] == "hit-exact"
    assert raw.headers["x-cachefleet-original-id"] == globex.id

    with pytest.raises(openai.AuthenticationError) as refused:
        await create(node, QUESTION, key=WRONG_KEY)
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        await sdk(node, WRONG_KEY).responses.create(
            model=CHAT_MODEL, input=QUESTION, store=False, stream=True
        )
    missing = await node.client.post(
        "/v1/responses", json={"model": CHAT_MODEL, "input": QUESTION, "store": False}
    )
    assert missing.status_code == 401
    assert stub.calls["responses"] == 3


async def test_other_methods_on_the_route_are_refused(matrix_node: Node) -> None:
    wrong = await matrix_node.client.get("/v1/responses")
    assert wrong.status_code == 405
    assert "POST" in wrong.json()["error"]["message"]


async def test_fails_open_like_chat(
    node_factory: NodeFactory, openai_stub: tuple[OpenAIStub, str]
) -> None:
    """Milvus down: answered by the upstream (a bypass saying why), then from the node's own
    semantic tier."""
    dead = f"http://127.0.0.1:{free_port()}"
    fast = {"milvus_ms": 200, "breaker_failures": 3}
    node = await node_factory(
        {"upstream": {"base_url": openai_stub[1]}, "milvus": {"uri": dead}, "deadlines": fast}
    )
    first, raw = await create(node, QUESTION)
    assert (raw.headers[CACHE], raw.headers["x-cachefleet-bypass-reason"]) == (
        "bypass",
        "milvus-unavailable",
    )
    assert QUESTION in first.output_text
    await node.settle()
    similar, raw = await create(node, PARAPHRASE)
    assert raw.headers[CACHE] == "hit-semantic"
    assert similar.output_text == first.output_text
