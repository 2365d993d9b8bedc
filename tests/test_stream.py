"""SSE recording and replay: a recorded stream rebuilds the non-stream completion exactly."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from cachefleet_node.core.stream import StreamRecorder, UsageChunkFilter, replay_chunks

BIG = 10_000_000
HEAD = {
    "id": "chatcmpl-abc",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_123",
    "service_tier": "default",
}


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(*choices: dict[str, Any], **extra: Any) -> bytes:
    return sse({**HEAD, "choices": list(choices), **extra})


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "logprobs": None, "finish_reason": finish}


def record(parts: Iterable[bytes], max_bytes: int = BIG) -> dict[str, Any] | None:
    recorder = StreamRecorder(max_bytes)
    for part in parts:
        recorder.feed(part)
    return recorder.completion()


def rechunk(data: bytes, rng: random.Random, max_size: int = 7) -> list[bytes]:
    """Split bytes at arbitrary positions (may cut UTF-8 characters and CRLFs)."""
    parts = []
    start = 0
    while start < len(data):
        end = min(len(data), start + rng.randint(1, max_size))
        parts.append(data[start:end])
        start = end
    return parts


# A realistic upstream stream: two choices (n=2), content, tool call fragments, usage last.
UPSTREAM: list[bytes] = [
    b": keep-alive\n\n",
    chunk(delta(0, role="assistant", content=""), delta(1, role="assistant", content=None)),
    chunk(delta(0, content="Bonjour, ")),
    chunk(delta(0, content="ça va? 🎉 ")),
    chunk(
        delta(
            1,
            tool_calls=[
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_", "arguments": ""},
                }
            ],
        )
    ),
    b": ping\n\n",
    chunk(
        delta(1, tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": '{"ci'}}])
    ),
    chunk(
        delta(
            1,
            tool_calls=[
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "now", "arguments": "{}"},
                }
            ],
        )
    ),
    chunk(delta(1, tool_calls=[{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}])),
    chunk(delta(0, content="Fin.")),
    chunk(delta(0, finish="stop")),
    chunk(delta(1, finish="tool_calls")),
    chunk(usage={"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}),
    b"data: [DONE]\n\n",
]

EXPECTED: dict[str, Any] = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_123",
    "service_tier": "default",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Bonjour, ça va? 🎉 Fin."},
            "finish_reason": "stop",
            "logprobs": None,
        },
        {
            "index": 1,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "now", "arguments": "{}"},
                    },
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        },
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46},
}


def test_multi_chunk_stream_rebuilds_the_non_stream_completion() -> None:
    assert record(UPSTREAM) == EXPECTED


def test_refusal_is_assembled() -> None:
    parts = [
        chunk(delta(role="assistant", content=None, refusal="")),
        chunk(delta(refusal="I can't ")),
        chunk(delta(refusal="help with that.")),
        chunk(delta(finish="stop")),
        b"data: [DONE]\n\n",
    ]
    completion = record(parts)
    assert completion is not None
    message = completion["choices"][0]["message"]
    assert message["refusal"] == "I can't help with that."
    assert message["content"] is None
    assert completion["usage"] is None


def test_usage_is_taken_from_the_last_chunk_that_carries_it() -> None:
    parts = [
        chunk(delta(content="hi"), usage=None),
        chunk(delta(finish="stop"), usage=None),
        chunk(usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
        b"data: [DONE]\n\n",
    ]
    completion = record(parts)
    assert completion is not None
    assert completion["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


@pytest.mark.parametrize("seed", range(25))
def test_arbitrary_byte_boundaries_give_the_same_result(seed: int) -> None:
    rng = random.Random(seed)
    data = b"".join(UPSTREAM)
    assert record(rechunk(data, rng)) == EXPECTED


@pytest.mark.parametrize("seed", range(25))
def test_crlf_line_endings_split_anywhere(seed: int) -> None:
    rng = random.Random(seed)
    data = b"".join(UPSTREAM).replace(b"\n", b"\r\n")
    assert record(rechunk(data, rng, max_size=5)) == EXPECTED


def test_split_inside_utf8_character() -> None:
    data = b"".join(UPSTREAM)
    cut = data.index("🎉".encode()) + 2  # in the middle of the 4-byte emoji
    assert record([data[:cut], data[cut:]]) == EXPECTED


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_split_inside_crlf_crlf(offset: int) -> None:
    data = b"".join(UPSTREAM).replace(b"\n", b"\r\n")
    positions = []
    start = 0
    while (found := data.find(b"\r\n\r\n", start)) >= 0:
        positions.append(found + offset)
        start = found + 4
    parts = [data[a:b] for a, b in zip([0, *positions], [*positions, len(data)], strict=True)]
    assert b"".join(parts) == data
    assert record(parts) == EXPECTED


def test_byte_at_a_time() -> None:
    data = b"".join(UPSTREAM).replace(b"\n", b"\r\n")
    assert record(data[i : i + 1] for i in range(len(data))) == EXPECTED


def test_keep_alive_comments_are_ignored() -> None:
    noisy = []
    for part in UPSTREAM:
        noisy.extend([b": keep-alive\n\n", b":\n\n", part])
    assert record(noisy) == EXPECTED


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        (
            "error-event",
            [*UPSTREAM[:3], sse({"error": {"message": "overloaded", "type": "server_error"}})],
        ),
        ("error-event-late", [*UPSTREAM[:-1], sse({"error": {"message": "x"}}), UPSTREAM[-1]]),
        ("not-an-object", [*UPSTREAM[:3], b"data: [1, 2]\n\n", *UPSTREAM[3:]]),
        ("malformed", [*UPSTREAM[:3], b'data: {"choices": [\n\n', *UPSTREAM[3:]]),
        ("no-done", UPSTREAM[:-1]),
        ("truncated", UPSTREAM[:5]),
        ("no-finish-reason", [*UPSTREAM[:10], UPSTREAM[11], *UPSTREAM[12:]]),
        ("only-done", [b"data: [DONE]\n\n"]),
        ("empty", []),
        # shapes a real upstream never sends, seen from broken proxies in front of one
        ("null-index", [*UPSTREAM[:3], b'data: {"choices": [{"index": null}]}\n\n', *UPSTREAM[3:]]),
        ("choices-object", [*UPSTREAM[:3], b'data: {"choices": {}}\n\n', *UPSTREAM[3:]]),
        ("choices-strings", [*UPSTREAM[:3], b'data: {"choices": ["x"]}\n\n', *UPSTREAM[3:]]),
        (
            "tool-calls-object",
            [
                *UPSTREAM[:3],
                b'data: {"choices": [{"delta": {"tool_calls": {}}}]}\n\n',
                *UPSTREAM[3:],
            ],
        ),
    ],
)
def test_failed_or_partial_streams_are_not_cacheable(name: str, parts: list[bytes]) -> None:
    assert record(parts) is None, name


def test_recorder_ignores_everything_after_failure() -> None:
    recorder = StreamRecorder(BIG)
    recorder.feed(b"data: not json\n\n")
    assert recorder.failed == "malformed-chunk"
    for part in UPSTREAM:
        recorder.feed(part)
    assert recorder.completion() is None


def test_exceeding_max_bytes_is_not_cacheable() -> None:
    data = b"".join(UPSTREAM)
    assert record([data], max_bytes=len(data)) == EXPECTED
    recorder = StreamRecorder(len(data) - 1)
    for part in rechunk(data, random.Random(1)):
        recorder.feed(part)
    assert recorder.failed == "too-large"
    assert recorder.completion() is None


# ------------------------------------------------------------------------------- replay


WORDS = ["alpha", "béta", "γάμμα", "日本語", "emoji🎉", "x", "", "  ", "long" * 20, "\n", '"q"']


def random_completion(rng: random.Random) -> dict[str, Any]:
    choices = []
    for index in range(rng.randint(1, 3)):
        message: dict[str, Any] = {"role": "assistant"}
        kind = rng.choice(["text", "empty", "tools", "refusal"])
        if kind == "text":
            message["content"] = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60)))
        elif kind == "empty":
            message["content"] = ""
        elif kind == "refusal":
            message["content"] = None
            message["refusal"] = "I can't help with " + rng.choice(WORDS)
        else:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{index}_{n}",
                    "type": "function",
                    "function": {
                        "name": f"fn_{rng.randint(0, 99)}",
                        "arguments": orjson.dumps({"q": rng.choice(WORDS)}).decode(),
                    },
                }
                for n in range(rng.randint(1, 3))
            ]
        finish = {"tools": "tool_calls"}.get(kind, rng.choice(["stop", "length"]))
        choices.append(
            {"index": index, "message": message, "finish_reason": finish, "logprobs": None}
        )
    completion: dict[str, Any] = {
        "id": f"chatcmpl-{rng.randint(0, 10**9)}",
        "object": "chat.completion",
        "created": rng.randint(1_600_000_000, 1_800_000_000),
        "model": rng.choice(["gpt-4o-mini", "gpt-4o-2024-08-06"]),
        "choices": choices,
        "usage": {
            "prompt_tokens": rng.randint(1, 500),
            "completion_tokens": rng.randint(1, 500),
            "total_tokens": 0,
        },
    }
    if rng.random() < 0.5:
        completion["system_fingerprint"] = f"fp_{rng.randint(0, 999)}"
    if rng.random() < 0.5:
        completion["service_tier"] = rng.choice(["default", "flex"])
    return completion


def parse_events(data: bytes) -> list[bytes]:
    assert data.endswith(b"\n\n")
    return [event.removeprefix(b"data: ") for event in data.split(b"\n\n")[:-1]]


@pytest.mark.parametrize("seed", range(40))
def test_replay_round_trips_through_the_recorder(seed: int) -> None:
    rng = random.Random(seed)
    original = random_completion(rng)
    include_usage = rng.random() < 0.5
    stream = b"".join(
        replay_chunks(original, include_usage=include_usage, piece_chars=rng.randint(1, 30))
    )
    rebuilt = record(rechunk(stream, rng, max_size=40))
    expected = dict(original) if include_usage else {**original, "usage": None}
    assert rebuilt == expected


def test_replay_is_a_valid_chunk_stream() -> None:
    stream = b"".join(replay_chunks(EXPECTED, include_usage=False))
    events = parse_events(stream)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["id"] == "chatcmpl-abc" and c["model"] == EXPECTED["model"] for c in chunks)
    assert all("usage" not in c for c in chunks)
    finishes = [
        (ch["index"], ch["finish_reason"])
        for c in chunks
        for ch in c["choices"]
        if ch["finish_reason"]
    ]
    assert finishes == [(0, "stop"), (1, "tool_calls")]


def test_replay_with_include_usage_ends_with_usage_then_done() -> None:
    events = parse_events(b"".join(replay_chunks(EXPECTED, include_usage=True)))
    assert events[-1] == b"[DONE]"
    usage_chunk = orjson.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == EXPECTED["usage"]
    assert all("usage" not in orjson.loads(e) for e in events[:-2])


def test_replay_splits_long_content_into_pieces() -> None:
    text = "word " * 200
    completion = {
        **EXPECTED,
        "choices": [{**EXPECTED["choices"][0], "message": {"role": "assistant", "content": text}}],
    }
    events = parse_events(b"".join(replay_chunks(completion, include_usage=False, piece_chars=24)))
    pieces = [orjson.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    contents = [p for p in pieces if p]
    assert len(contents) > 30
    assert all(len(p) <= 24 for p in contents)
    assert "".join(contents) == text


_ODD_VALUES: list[Any] = [None, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}, True]


def _mutations(value: Any, rng: random.Random) -> Any:
    """`value` with one nested field replaced by a value of another JSON type."""
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        return {
            **value,
            key: _mutations(value[key], rng) if rng.random() < 0.6 else rng.choice(_ODD_VALUES),
        }
    if isinstance(value, list) and value:
        at = rng.randrange(len(value))
        return [*value[:at], _mutations(value[at], rng), *value[at + 1 :]]
    return rng.choice(_ODD_VALUES)


@pytest.mark.parametrize("seed", range(300))
def test_no_chunk_shape_makes_the_recorder_raise(seed: int) -> None:
    """Whatever shape an upstream chunk has, recording never raises (the relay goes on) and a
    stream with a chunk it cannot read is never cached."""
    rng = random.Random(seed)
    parts = list(UPSTREAM)
    at = rng.choice([i for i, part in enumerate(parts) if part.startswith(b"data: {")])
    payload = orjson.loads(parts[at].removeprefix(b"data: "))
    parts[at] = b"data: " + orjson.dumps(_mutations(payload, rng)) + b"\n\n"
    result = record(parts)  # must not raise
    if result is not None:
        assert result["choices"], "a recorded stream has choices"
        for choice in result["choices"]:
            assert isinstance(choice["message"], dict)


def test_the_usage_filter_drops_only_the_usage_chunk() -> None:
    usage = sse({**HEAD, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    stream = [*UPSTREAM[:-1], usage, UPSTREAM[-1]]
    raw = b"".join(stream)
    for cut in (1, 7, 64, len(raw)):
        usage_filter = UsageChunkFilter()
        out = b"".join(usage_filter.feed(raw[i : i + cut]) for i in range(0, len(raw), cut))
        out += usage_filter.flush()
        kept = [part for part in stream if b'"choices":[]' not in part]
        assert len(kept) < len(stream)  # there was a usage chunk to drop
        assert out == b"".join(kept)
