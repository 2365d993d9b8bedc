"""The Responses API's pure parts: which requests are cached, their keys, recording a typed
event stream and replaying a stored response (checked against the `openai` SDK's types)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.entry import completion_usage
from cachefleet_node.core.errors import RequestError
from cachefleet_node.core.keys import compute_keys
from cachefleet_node.core.policy import decide_request
from cachefleet_node.core.request import parse_chat_request
from cachefleet_node.core.responses import (
    ResponsesStreamRecorder,
    parse_responses_request,
    replay_events,
    response_cacheable,
    served_response,
)

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
NS = NamespaceConfig(name="support")


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "input": "How do I reset my password?", "store": False} | fields


def stored(*output: dict[str, Any]) -> dict[str, Any]:
    message = {
        "id": "msg_1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [
            {
                "type": "output_text",
                "text": "Open the settings page, then click reset.",
                "annotations": [],
                "logprobs": [],
            }
        ],
    }
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "model": "gpt-4o-mini-2024-07-18",
        "output": list(output) or [message],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 9,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 21,
        },
    }


def keys_of(request_body: dict[str, Any]) -> Any:
    chat = parse_responses_request(request_body).chat
    return compute_keys(chat.body, namespace="support", tenant="t")


def test_instructions_and_input_are_keyed_as_system_and_user_messages() -> None:
    keys = keys_of(body(instructions="Be brief."))
    listed = keys_of(
        body(
            instructions="Be brief.",
            input=[
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "How do I reset my password?"}],
                }
            ],
        )
    )
    chat = compute_keys(
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "How do I reset my password?"},
            ],
        },
        namespace="support",
        tenant="t",
    )
    assert keys.semantic is not None
    assert keys.semantic.text == chat.semantic.text == "How do I reset my password?"
    assert keys.semantic == listed.semantic  # a string input is one user message
    assert keys.exact != chat.exact  # never a chat answer for a response
    assert keys.semantic.partition != chat.semantic.partition
    other = keys_of(body(instructions="Be thorough."))
    assert other.semantic is not None
    assert other.semantic.partition != keys.semantic.partition
    # fields that cannot change the answer stay out; those that can are keyed
    assert keys_of(body(instructions="Be brief.", stream=True, user="u1")) == keys
    assert keys_of(body(instructions="Be brief.", max_output_tokens=5)).exact != keys.exact


def test_function_call_turns_are_keyed_and_follow_the_tool_result_policy() -> None:
    turns = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    request = parse_responses_request(body(input=turns))
    assert request.bypass is None
    assert decide_request(request.chat, NS).reason == "tool-result"
    assert compute_keys(request.chat.body, namespace="support", tenant="t").semantic is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"store": True}, "store"),
        ({"store": None}, "store"),
        ({"previous_response_id": "resp_1"}, "previous-response"),
        ({"conversation": {"id": "conv_1"}}, "conversation"),
        ({"background": True}, "background"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt-template"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "server-tool"),
        ({"tools": [{"type": "mcp", "server_label": "x"}]}, "server-tool"),
        ({"tools": [{"type": "image_generation"}]}, "server-tool"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input-item"),
        (
            {
                "input": [
                    {
                        "type": "web_search_call",
                        "id": "ws_1",
                        "status": "completed",
                        "action": {"type": "search", "query": "reset password"},
                    }
                ]
            },
            "input-item",
        ),
        ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, None),
        ({"stream": None, "brand_new_field": {"x": 1}}, None),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "What is on this picture?"},
                            {
                                "type": "input_image",
                                "image_url": "https://x/y.png",
                                "detail": "auto",
                            },
                        ],
                    }
                ]
            },
            None,
        ),
        ({"text": {"format": {"type": "json_schema", "name": "a", "schema": {}}}}, None),
        ({"background": False, "previous_response_id": None}, None),
    ],
)
def test_bypass_rules(fields: dict[str, Any], reason: str | None) -> None:
    request_body = body(**fields)
    if fields.get("store", False) is None:
        del request_body["store"]
    assert parse_responses_request(request_body).bypass == reason


def test_requests_the_api_completes_from_a_stored_prompt_bypass() -> None:
    templated = {"prompt": {"id": "pmpt_1"}, "store": False}
    assert parse_responses_request(templated).bypass == "no-model"
    assert parse_responses_request({**templated, "model": "gpt-4o-mini"}).bypass == "no-input"


@pytest.mark.parametrize(
    ("bad", "param"),
    [
        ({"input": None}, "input"),
        ({"input": []}, "input"),
        ({"model": ""}, "model"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": 2.5}, "temperature"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_video"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"role": "user", "content": 7}]}, "input[0].content"),
        ({"input": [{"role": "user", "content": 7}] * 10_000}, "input[0].content"),
        ({"model": "m" * 257}, "model"),
        ({"tools": [{"type": "function", "parameters": {}}]}, "tools[0].name"),
        ({"store": "no"}, "store"),
    ],
)
def test_invalid_requests_name_the_parameter(bad: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_responses_request(body(**bad))
    assert (caught.value.status, caught.value.param) == (400, param)


def test_stream_null_is_accepted() -> None:
    assert parse_responses_request(body(stream=None)).chat.stream is False
    assert parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}]})


def test_only_completed_replayable_responses_are_stored() -> None:
    assert response_cacheable(stored(), 100, NS) is None
    assert response_cacheable(stored(), NS.max_entry_bytes + 1, NS) == "too-large"
    assert response_cacheable({**stored(), "status": "incomplete"}, 100, NS) == "unfinished"
    assert response_cacheable({**stored(), "output": []}, 100, NS) == "no-choices"
    search = {"id": "ws_1", "type": "web_search_call", "status": "completed"}
    assert response_cacheable(stored(search), 100, NS) == "malformed"
    image = {"id": "m", "type": "message", "content": [{"type": "output_image"}]}
    assert response_cacheable(stored(image), 100, NS) == "malformed"
    assert response_cacheable({"object": "chat.completion"}, 100, NS) == "malformed"


def test_token_counts_of_a_response_are_those_of_its_entry() -> None:
    assert completion_usage(stored()) == (12, 9)  # what savings count on a hit


def test_a_served_hit_is_a_new_response_with_cached_input_tokens() -> None:
    original = stored()
    kept = copy.deepcopy(original)
    served = served_response(original, created_at=1800000000)
    assert original == kept
    assert served["id"].startswith("resp_")
    assert served["id"] != original["id"]
    assert served["created_at"] == 1800000000
    assert served["output"][0]["id"].startswith("msg_")
    assert served["output"][0]["id"] != original["output"][0]["id"]
    assert served["usage"]["input_tokens_details"]["cached_tokens"] == 12
    assert served["usage"]["total_tokens"] == 21
    parsed = Response.model_validate(served)
    assert parsed.output_text == "Open the settings page, then click reset."


def test_replay_is_the_typed_event_stream_the_sdk_parses() -> None:
    call = {
        "id": "fc_1",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris, the capital of France"}',
    }
    message = stored()["output"][0]
    refusal = {**message, "content": [{"type": "refusal", "refusal": "I cannot help."}]}
    served = served_response(stored(message, call, refusal), created_at=1)
    raw = b"".join(replay_events(served, piece_chars=8))
    events = [orjson.loads(block.split(b"\ndata: ", 1)[1]) for block in raw.split(b"\n\n")[:-1]]
    parsed = [EVENTS.validate_python(event) for event in events]
    assert [event.sequence_number for event in parsed] == list(range(len(parsed)))
    assert parsed[0].type == "response.created"
    assert parsed[-1].type == "response.completed"
    assert parsed[-1].response.output_text == "Open the settings page, then click reset."
    text = "".join(e.delta for e in parsed if e.type == "response.output_text.delta")
    arguments = "".join(
        e.delta for e in parsed if e.type == "response.function_call_arguments.delta"
    )
    assert text == "Open the settings page, then click reset."
    assert arguments == call["arguments"]
    assert [e.refusal for e in parsed if e.type == "response.refusal.done"] == ["I cannot help."]
    assert all(block.startswith(b"event: ") for block in raw.split(b"\n\n")[:-1])


def test_recorder_keeps_the_completed_response_of_a_clean_stream() -> None:
    served = served_response(stored(), created_at=1)
    raw = b"".join(replay_events(served)).replace(b"\n", b"\r\n")
    recorder = ResponsesStreamRecorder(max_bytes=1 << 20)
    for start in range(0, len(raw), 7):  # events split anywhere, CRLF too
        recorder.feed(raw[start : start + 7])
    assert recorder.completion() == served


def test_recorder_ignores_a_done_marker_after_completion() -> None:
    served = served_response(stored(), created_at=1)
    recorder = ResponsesStreamRecorder(max_bytes=1 << 20)
    for event in [*replay_events(served), b": keep-alive\n\n", b"data: [DONE]\n\n"]:
        recorder.feed(event)
    assert recorder.completion() == served


@pytest.mark.parametrize(
    ("tail", "failed"),
    [
        (b'event: error\ndata: {"type": "error", "message": "boom"}\n\n', "error-event"),
        (b'data: {"type": "response.failed", "response": {}}\n\n', "error-event"),
        (b"data: {not json\n\n", "malformed-chunk"),
    ],
)
def test_recorder_refuses_failed_streams(tail: bytes, failed: str) -> None:
    events = list(replay_events(served_response(stored(), created_at=1)))
    recorder = ResponsesStreamRecorder(max_bytes=1 << 20)
    for event in [*events[:-1], tail, events[-1]]:
        recorder.feed(event)
    assert (recorder.completion(), recorder.failed) == (None, failed)


def test_recorder_refuses_unfinished_and_oversized_streams() -> None:
    events = list(replay_events(served_response(stored(), created_at=1)))
    unfinished = ResponsesStreamRecorder(max_bytes=1 << 20)
    for event in events[:-1]:
        unfinished.feed(event)
    assert unfinished.completion() is None
    small = ResponsesStreamRecorder(max_bytes=100)
    for event in events:
        small.feed(event)
    assert (small.completion(), small.failed) == (None, "too-large")


def _events(served: dict[str, Any], piece_chars: int) -> list[Any]:
    raw = b"".join(replay_events(served, piece_chars=piece_chars))
    return [
        EVENTS.validate_python(orjson.loads(block.split(b"\ndata: ", 1)[1]))
        for block in raw.split(b"\n\n")[:-1]
    ]


def test_text_parts_carry_the_logprobs_lists_the_api_sends() -> None:
    bare = stored()
    del bare["output"][0]["content"][0]["logprobs"]  # an upstream that leaves them out
    served = served_response(bare, created_at=1)
    assert served["output"][0]["content"][0]["logprobs"] == []
    events = _events(served, 8)
    added = next(e for e in events if e.type == "response.content_part.added")
    assert added.part.logprobs == []
    assert all(e.logprobs == [] for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.logprobs == []
    assert events[-1].response.output[0].content[0].logprobs == []


def test_stored_logprobs_are_replayed_with_their_tokens() -> None:
    tokens = ["Open", " the", " settings", " page", ",", " then", " click", " reset", "."]
    logprobs = [
        {"token": t, "bytes": list(t.encode()), "logprob": -0.1 * i, "top_logprobs": []}
        for i, t in enumerate(tokens)
    ]
    original = stored()
    part = original["output"][0]["content"][0]
    part["logprobs"] = logprobs
    part["text"] = "".join(tokens)
    events = _events(served_response(original, created_at=1), 8)
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert [lp.token for e in deltas for lp in e.logprobs] == tokens
    assert all("".join(lp.token for lp in e.logprobs) == e.delta for e in deltas)
    done = next(e for e in events if e.type == "response.output_text.done")
    assert [lp.model_dump() for lp in done.logprobs] == logprobs
    assert events[-1].response.output[0].content[0].logprobs is not None
    assert len(events[-1].response.output[0].content[0].logprobs) == len(tokens)
