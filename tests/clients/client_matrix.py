"""The scenarios every client of the matrix goes through (issue 15's acceptance): each takes a
driver (one real client), the stub upstream and the node, and checks what the client parsed
and what the stub was asked. The stub's call counters are the evidence that does not depend
on headers or timing; the `x-cachefleet-cache` header is checked wherever the client shows it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from client_drivers import EMBEDDING_MODEL, HIDDEN, Driver, Reply, Usage
from openai_stub import (
    CHAT_MODELS,
    EMBEDDING_MODELS,
    OTHER_KEY,
    WRONG_KEY,
    OpenAIStub,
    embedding_of,
)

from node_harness import Node

QUESTION = "How do I reset my password?"
PARAPHRASE = "how can I reset my password"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

Scenario = Callable[[Driver, OpenAIStub, Node], Awaitable[None]]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def seen(cache: str | None, expected: str) -> None:
    """The node's cache header as the client exposes it (not checked where it hides them)."""
    if cache != HIDDEN:
        assert cache == expected


def hit_usage(hit: Reply, stored: Usage | None) -> None:
    """A hit reports the stored answer's token counts, every prompt token as cached."""
    assert stored is not None
    assert hit.usage is not None, "usage missing on a hit"
    assert (hit.usage.prompt, hit.usage.completion) == (stored.prompt, stored.completion)
    assert hit.usage.total == stored.prompt + stored.completion
    assert hit.usage.cached == stored.prompt


def fresh_ids(*replies: Reply) -> None:
    """Every hit is a new response: an `id` of its own."""
    ids = [reply.id for reply in replies if reply.id != HIDDEN]
    assert None not in ids
    assert len(set(ids)) == len(ids), ids


async def exact_and_paraphrase_hits(client: Driver, stub: OpenAIStub, node: Node) -> None:
    first = await client.chat(user(QUESTION))
    seen(first.cache, "miss")
    assert first.text is not None
    assert QUESTION in first.text
    assert first.usage is not None
    assert first.usage.prompt > 0
    await node.settle()

    again = await client.chat(user(QUESTION))
    seen(again.cache, "hit-exact")
    assert again.text == first.text
    hit_usage(again, first.usage)

    paraphrase = await client.chat(user(PARAPHRASE))
    seen(paraphrase.cache, "hit-semantic")
    assert paraphrase.text == first.text  # the stored answer, not a new one
    hit_usage(paraphrase, first.usage)
    assert stub.calls["chat"] == 1
    fresh_ids(first, again, paraphrase)


async def streamed_replay(client: Driver, stub: OpenAIStub, node: Node) -> None:
    # a stream that does not ask for usage, as LangChain's default does
    first = await client.chat(user(QUESTION), stream=True)
    seen(first.cache, "miss")
    assert first.text is not None
    assert QUESTION in first.text
    assert first.usage is None  # the usage the node asked for is not shown to this client
    await node.settle()
    stored = await client.chat(user(QUESTION))  # a plain hit knows the stream's usage
    seen(stored.cache, "hit-exact")
    assert stored.text == first.text
    assert stored.usage is not None
    assert stored.usage.prompt > 0
    assert stored.usage.completion > 0

    replay = await client.chat(user(QUESTION), stream=True, include_usage=True)
    seen(replay.cache, "hit-exact")
    assert replay.text == first.text
    hit_usage(replay, stored.usage)

    paraphrase = await client.chat(user(PARAPHRASE), stream=True, include_usage=True)
    seen(paraphrase.cache, "hit-semantic")
    assert paraphrase.text == first.text
    hit_usage(paraphrase, stored.usage)
    fresh_ids(first, stored, replay, paraphrase)
    assert (stub.calls["chat"], stub.calls["chat-stream"]) == (1, 1)


async def tool_calls(client: Driver, stub: OpenAIStub, node: Node) -> None:
    ask = user("What is the weather in Paris right now?")
    first = await client.chat(ask, tools=[WEATHER_TOOL])
    seen(first.cache, "miss")
    assert first.text is None
    (call,) = first.tool_calls
    assert call.name == "get_weather"
    assert call.arguments == {"city": "What is the weather in Paris right now?"}
    await node.settle()

    again = await client.chat(ask, tools=[WEATHER_TOOL])
    seen(again.cache, "hit-exact")
    assert again.tool_calls == first.tool_calls
    hit_usage(again, first.usage)
    streamed = await client.chat(ask, tools=[WEATHER_TOOL], stream=True)
    seen(streamed.cache, "hit-exact")
    assert [(c.id, c.name, c.arguments) for c in streamed.tool_calls] == [
        (call.id, call.name, call.arguments)
    ]
    assert stub.calls["chat"] == 1

    # the tool's result goes back: never answered from cache by default
    result = [
        *ask,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18C and cloudy"},
    ]
    answer = await client.chat(result, tools=[WEATHER_TOOL])
    seen(answer.cache, "bypass")
    assert answer.text is not None
    assert "the tool said 18C and cloudy" in answer.text
    assert stub.calls["chat"] == 2
    sent = stub.chat_requests[-1]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "18C and cloudy"}
    assert sent[-2]["tool_calls"][0]["id"] == call.id


async def upstream_errors(client: Driver, stub: OpenAIStub, node: Node) -> None:
    for status, name, words in (
        (429, "RateLimitError", "Rate limit reached"),
        (500, "InternalServerError", "The server had an error"),
    ):
        stub.fail(status)
        with pytest.raises(client.error_base) as caught:
            await client.chat(user(QUESTION))
        assert client.error_name(caught.value) == name
        assert words in str(caught.value)
    with pytest.raises(client.error_base) as caught:
        await client.chat(user(QUESTION), model="gpt-no-such-model")
    assert client.error_name(caught.value) == "NotFoundError"
    assert "does not exist" in str(caught.value)
    await node.settle()

    # no error was stored: the next call is a miss that the upstream answers
    answer = await client.chat(user(QUESTION))
    seen(answer.cache, "miss")
    assert answer.text is not None
    assert QUESTION in answer.text
    assert stub.calls["chat"] == 4


async def bad_key_refused_on_hits(client: Driver, stub: OpenAIStub, node: Node) -> None:
    first = await client.chat(user(QUESTION))
    seen(first.cache, "miss")
    await node.settle()
    for stream in (False, True):
        with pytest.raises(client.error_base) as caught:
            await client.chat(user(QUESTION), key=WRONG_KEY, stream=stream)
        assert client.error_name(caught.value) == "AuthenticationError"
        assert "Incorrect API key provided" in str(caught.value)  # the upstream's own 401
    with pytest.raises(client.error_base) as caught:
        await client.chat(user(PARAPHRASE), key=WRONG_KEY)  # a semantic hit neither
    assert client.error_name(caught.value) == "AuthenticationError"
    other = await client.chat(user(QUESTION), key=OTHER_KEY)  # accepted by the upstream
    seen(other.cache, "hit-exact")
    assert other.text == first.text
    assert stub.calls["chat"] == 1  # no completion was paid for after the first


async def models_pass_through(client: Driver, stub: OpenAIStub, node: Node) -> None:
    listing = await client.models()
    seen(listing.cache, "bypass")
    assert listing.ids == [*CHAT_MODELS, *EMBEDDING_MODELS]
    assert stub.calls["models"] == 1  # answered by the upstream


def close_to(vectors: list[list[float]], texts: list[str]) -> bool:
    expected = [embedding_of(EMBEDDING_MODEL, text, None) for text in texts]
    return all(
        np.allclose(got, want, atol=1e-6) for got, want in zip(vectors, expected, strict=True)
    )


async def embeddings_hit(client: Driver, stub: OpenAIStub, node: Node) -> None:
    first = await client.embed(["first passage", "second passage"])
    seen(first.cache, "miss")
    assert close_to(first.vectors, ["first passage", "second passage"])
    again = await client.embed(["second passage", "first passage"])
    seen(again.cache, "hit-exact")
    assert again.vectors == first.vectors[::-1]
    assert stub.calls["embeddings"] == 1
    partial = await client.embed(["first passage", "third passage"])
    seen(partial.cache, "partial")
    assert close_to(partial.vectors, ["first passage", "third passage"])
    assert stub.calls["embeddings"] == 2
    with pytest.raises(client.error_base) as caught:
        await client.embed(["first passage"], key=WRONG_KEY)
    assert client.error_name(caught.value) == "AuthenticationError"
    assert stub.calls["embeddings"] == 2


async def responses_cached(client: Driver, stub: OpenAIStub, node: Node) -> None:
    # A stateless request (`store: false`): miss, then hits, streamed replay parsed.
    first = await client.respond(QUESTION, store=False)
    seen(first.cache, "miss")
    assert first.text is not None
    assert QUESTION in first.text
    await node.settle()
    again = await client.respond(QUESTION, store=False)
    seen(again.cache, "hit-exact")
    similar = await client.respond(PARAPHRASE, store=False)
    seen(similar.cache, "hit-semantic")
    streamed = await client.respond(QUESTION, stream=True, store=False)
    seen(streamed.cache, "hit-exact")
    assert again.text == similar.text == streamed.text == first.text
    assert (stub.calls["responses"], stub.calls["responses-stream"]) == (1, 0)
    with pytest.raises(client.error_base) as caught:
        await client.respond(QUESTION, key=WRONG_KEY, store=False)
    assert client.error_name(caught.value) == "AuthenticationError"
    assert stub.calls["responses"] == 1


async def responses_stored_pass_through(client: Driver, stub: OpenAIStub, node: Node) -> None:
    # The API's default, `store: true`, keeps the response upstream, which a replay cannot:
    # every such call reaches the upstream, streamed or not.
    first = await client.respond("Name three prime numbers.")
    seen(first.cache, "bypass")
    assert first.text is not None
    assert "Name three prime numbers." in first.text
    streamed = await client.respond("Name three prime numbers.", stream=True)
    seen(streamed.cache, "bypass")
    assert streamed.text == first.text
    assert (stub.calls["responses"], stub.calls["responses-stream"]) == (2, 1)


#: Scenario name -> (the client feature it needs, the scenario).
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "exact-and-paraphrase-hits": ("chat", exact_and_paraphrase_hits),
    "streamed-replay": ("stream", streamed_replay),
    "tool-calls": ("tools", tool_calls),
    "upstream-errors": ("chat", upstream_errors),
    "bad-key-refused-on-hits": ("chat", bad_key_refused_on_hits),
    "models-pass-through": ("models", models_pass_through),
    "embeddings-hit": ("embeddings", embeddings_hit),
    "responses-cached": ("responses", responses_cached),
    "responses-stored-pass-through": ("responses", responses_stored_pass_through),
}


def cases(drivers: tuple[type[Driver], ...]) -> list[Any]:
    """pytest params (driver class, scenario) for every scenario each client supports."""
    return [
        pytest.param(driver, scenario, id=f"{driver.name}-{name}")
        for driver in drivers
        for name, (feature, scenario) in SCENARIOS.items()
        if feature in driver.features
    ]
