"""The matrix's stub, checked with the `openai` SDK directly (no node between): every route it
serves parses into the SDK's types, so what the matrix sees through the node is the API's
shape, not the stub's quirks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
import pytest_asyncio
from openai_stub import CHAT_MODELS, GOOD_KEY, WRONG_KEY, OpenAIStub

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"term": {"type": "string"}, "limit": {"type": "integer"}},
        },
    },
}


@pytest_asyncio.fixture
async def direct(openai_stub: tuple[OpenAIStub, str]) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=openai_stub[1], api_key=GOOD_KEY, max_retries=0)
    yield client
    await client.close()


async def test_chat_answers_streams_and_calls_tools(direct: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "Find cheap flights"}]
    plain = await direct.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert plain.model == CHAT_MODELS["gpt-4o-mini"]
    assert plain.choices[0].finish_reason == "stop"
    assert "Find cheap flights" in (plain.choices[0].message.content or "")
    assert plain.usage is not None
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens

    stream = await direct.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        plain.choices[0].message.content
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage == plain.usage

    called = await direct.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        tools=[TOOL],
    )
    assert called.choices[0].finish_reason == "tool_calls"
    (call,) = called.choices[0].message.tool_calls or []
    assert call.function.name == "lookup"
    assert call.function.arguments == '{"term":"Find cheap flights","limit":1}'


async def test_chat_logprobs_parse_whole_and_per_chunk(direct: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "Find cheap flights"}]
    plain = await direct.chat.completions.create(
        model="gpt-4o-mini", messages=messages, logprobs=True, top_logprobs=2
    )
    logprobs = plain.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content
    assert "".join(t.token for t in logprobs.content) == plain.choices[0].message.content
    first = logprobs.content[0]
    assert bytes(first.bytes or []).decode() == first.token
    assert first.top_logprobs[0].token == first.token

    stream = await direct.chat.completions.create(
        model="gpt-4o-mini", messages=messages, logprobs=True, top_logprobs=2, stream=True
    )
    streamed = [
        token
        async for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs
        for token in chunk.choices[0].logprobs.content or []
    ]
    assert streamed == logprobs.content
    with pytest.raises(openai.BadRequestError, match="logprobs must be set"):
        await direct.chat.completions.create(model="gpt-4o-mini", messages=messages, top_logprobs=2)


async def test_responses_stream_typed_events_and_chain(direct: openai.AsyncOpenAI) -> None:
    first = await direct.responses.create(model="gpt-4o-mini", input="Plan a trip")
    assert first.status == "completed"
    assert "Plan a trip" in first.output_text
    assert (await direct.responses.retrieve(first.id)).output_text == first.output_text
    events = [
        event
        async for event in await direct.responses.create(
            model="gpt-4o-mini", input="Plan a trip", stream=True
        )
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == first.output_text

    follow = await direct.responses.create(
        model="gpt-4o-mini", input="And back?", previous_response_id=first.id
    )
    assert follow.previous_response_id == first.id
    with pytest.raises(openai.BadRequestError, match="not found"):
        await direct.responses.create(
            model="gpt-4o-mini", input="x", previous_response_id="resp_missing"
        )
    tools = [{"type": "function", "name": "lookup", "parameters": TOOL["function"]["parameters"]}]
    called = await direct.responses.create(model="gpt-4o-mini", input="Find it", tools=tools)
    assert called.output[0].type == "function_call"


async def test_embeddings_models_and_errors(
    direct: openai.AsyncOpenAI, openai_stub: tuple[OpenAIStub, str]
) -> None:
    vectors = await direct.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], dimensions=8
    )
    assert [len(item.embedding) for item in vectors.data] == [8, 8]
    assert (await direct.models.retrieve("gpt-4o-mini")).id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        await direct.models.retrieve("gpt-nope")
    with pytest.raises(openai.BadRequestError):
        await direct.embeddings.create(model="text-embedding-ada-002", input="a", dimensions=8)
    stub = openai_stub[0]
    stub.fail(503)
    with pytest.raises(openai.InternalServerError, match="overloaded"):
        await direct.embeddings.create(model="text-embedding-3-small", input="a")
    refused = openai.AsyncOpenAI(base_url=openai_stub[1], api_key=WRONG_KEY, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await refused.models.list()
    assert caught.value.code == "invalid_api_key"
    await refused.close()
