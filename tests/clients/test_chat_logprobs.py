"""Chat logprobs through the node, with the real `openai` SDK against the independent stub:
recorded from JSON answers and streams, replayed as the SDK parses them, served only to a
request the entry's logprobs cover, and `null` for a request that did not ask."""

from __future__ import annotations

from typing import Any

import openai
from client_drivers import CHAT_MODEL
from client_matrix import PARAPHRASE, QUESTION, user
from openai_stub import GOOD_KEY, OpenAIStub

from node_harness import Node

CACHE = "x-cachefleet-cache"


def sdk(node: Node) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{node.url}/v1", api_key=GOOD_KEY, max_retries=0)


async def ask(node: Node, text: str = QUESTION, **fields: Any) -> tuple[Any, str]:
    """A non-streamed call: the parsed completion and how the node answered."""
    raw = await sdk(node).chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=user(text), **fields
    )
    return raw.parse(), raw.headers[CACHE]


async def stream(node: Node, **fields: Any) -> tuple[list[Any], str]:
    """A streamed call: the choices of its chunks and how the node answered."""
    raw = await sdk(node).chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=user(QUESTION), stream=True, **fields
    )
    chunks = [chunk async for chunk in raw.parse()]
    return [c.choices[0] for c in chunks if c.choices], raw.headers[CACHE]


def tokens(choice: Any) -> list[str]:
    return [t.token for t in choice.logprobs.content]


async def test_json_logprobs_miss_then_hit(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    first, result = await ask(matrix_node, logprobs=True, top_logprobs=2)
    assert result == "miss"
    choice = first.choices[0]
    assert "".join(tokens(choice)) == choice.message.content
    assert len(choice.logprobs.content[0].top_logprobs) == 2
    await matrix_node.settle()

    again, result = await ask(matrix_node, logprobs=True, top_logprobs=2)
    assert result == "hit-exact"
    assert again.choices[0].logprobs == choice.logprobs

    fewer, result = await ask(matrix_node, logprobs=True, top_logprobs=1)
    assert result == "hit-exact"  # logprobs are no part of the key: the entry covers 1
    assert tokens(fewer.choices[0]) == tokens(choice)
    assert all(len(t.top_logprobs) == 1 for t in fewer.choices[0].logprobs.content)

    plain, result = await ask(matrix_node)
    assert result == "hit-exact"
    assert plain.choices[0].logprobs is None  # not asked for: not sent
    assert openai_stub[0].calls["chat"] == 1


async def test_stream_records_and_replays_logprobs(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    live, result = await stream(matrix_node, logprobs=True, top_logprobs=1)
    assert result == "miss"
    live_tokens = [
        t.token for c in live if c.logprobs and c.logprobs.content for t in c.logprobs.content
    ]
    content = "".join(c.delta.content or "" for c in live)
    assert "".join(live_tokens) == content
    await matrix_node.settle()

    replay, result = await stream(matrix_node, logprobs=True, top_logprobs=1)
    assert result == "hit-exact"
    assert "".join(c.delta.content or "" for c in replay) == content
    replayed: list[str] = []
    for choice in replay:
        if choice.delta.content:  # each chunk carries the tokens of its own content
            assert "".join(tokens(choice)) == choice.delta.content
            replayed += tokens(choice)
    assert replayed == live_tokens

    answer, result = await ask(matrix_node, logprobs=True, top_logprobs=1)
    assert result == "hit-exact"  # the recorded stream answers JSON too, with its logprobs
    assert tokens(answer.choices[0]) == live_tokens

    plain, result = await stream(matrix_node)
    assert result == "hit-exact"
    assert all(c.logprobs is None for c in plain)
    assert openai_stub[0].calls["chat"] == 1


async def test_a_logprobs_request_is_not_served_from_an_entry_without_them(
    openai_stub: tuple[OpenAIStub, str], matrix_node: Node
) -> None:
    stub = openai_stub[0]
    _, result = await stream(matrix_node)  # stored without logprobs
    assert result == "miss"
    await matrix_node.settle()

    first, result = await ask(matrix_node, logprobs=True)
    assert result == "miss"  # neither an exact nor a semantic hit (similarity 1) on it
    assert first.choices[0].logprobs.content
    assert stub.calls["chat"] == 2
    await matrix_node.settle()

    again, result = await ask(matrix_node, logprobs=True)
    assert result == "hit-exact"  # the fresh answer replaced the entry
    assert tokens(again.choices[0]) == tokens(first.choices[0])

    deeper, result = await ask(matrix_node, logprobs=True, top_logprobs=3)
    assert result == "miss"  # the entry keeps no alternatives
    assert len(deeper.choices[0].logprobs.content[0].top_logprobs) == 3
    await matrix_node.settle()
    _, result = await ask(matrix_node, logprobs=True, top_logprobs=2)
    assert result == "hit-exact"
    assert stub.calls["chat"] == 3

    similar, result = await ask(matrix_node, PARAPHRASE, logprobs=True, top_logprobs=3)
    assert result == "hit-semantic"  # a paraphrase is served the entry's logprobs
    assert tokens(similar.choices[0]) == tokens(deeper.choices[0])
