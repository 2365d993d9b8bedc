"""Logprobs (pure): recorded from a stream per choice, kept on the entry with their depth,
replayed split with the content, served only to a request they cover, out of the keys."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.entry import (
    CacheEntry,
    logprobs_depth,
    requested_logprobs,
    with_logprobs,
)
from cachefleet_node.core.planning import plan_request
from cachefleet_node.core.routing import NamespaceRouter
from cachefleet_node.core.stream import StreamRecorder, content_pieces, replay_chunks

HEAD = {"id": "chatcmpl-lp", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def token(text: str, top: int = 2) -> dict[str, Any]:
    alternatives = [{"token": text + "~" * i, "logprob": -1.0 - i, "bytes": []} for i in range(top)]
    return {
        "token": text,
        "logprob": -1.0,
        "bytes": list(text.encode()),
        "top_logprobs": alternatives,
    }


def sse(choices: list[dict[str, Any]], **extra: Any) -> bytes:
    return b"data: " + orjson.dumps({**HEAD, "choices": choices, **extra}) + b"\n\n"


def part(
    index: int, delta: dict[str, Any], logprobs: Any, finish: str | None = None
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def completion(content: str | None, logprobs: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": logprobs}
    return {
        "id": "chatcmpl-lp",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }


def replayed(served: dict[str, Any]) -> list[dict[str, Any]]:
    """The choice of each chunk of a replay (the [DONE] left out)."""
    events = list(replay_chunks(served, include_usage=False, piece_chars=8))
    return [orjson.loads(e[6:])["choices"][0] for e in events[:-1]]


def test_a_stream_records_the_logprobs_of_each_choice_concatenated() -> None:
    recorder = StreamRecorder(10_000_000)
    for event in (
        sse([part(0, {"role": "assistant", "content": ""}, {"content": [], "refusal": None})]),
        sse([part(1, {"role": "assistant", "content": ""}, None)]),
        sse([part(0, {"content": "Hi"}, {"content": [token("Hi")], "refusal": None})]),
        sse([part(1, {"content": "No"}, None)]),
        sse([part(0, {"content": " there"}, {"content": [token(" there")], "refusal": None})]),
        sse([part(0, {}, None, "stop"), part(1, {}, None, "stop")]),
        b"data: [DONE]\n\n",
    ):
        recorder.feed(event)
    recorded = recorder.completion()
    assert recorded is not None
    first, second = recorded["choices"]
    assert first["logprobs"] == {"content": [token("Hi"), token(" there")], "refusal": None}
    assert second["logprobs"] is None  # never sent for this choice


def test_refusal_logprobs_are_recorded_apart() -> None:
    recorder = StreamRecorder(10_000_000)
    for event in (
        sse([part(0, {"role": "assistant", "content": None}, None)]),
        sse([part(0, {"refusal": "No."}, {"content": None, "refusal": [token("No.")]})]),
        sse([part(0, {}, None, "stop")]),
        b"data: [DONE]\n\n",
    ):
        recorder.feed(event)
    recorded = recorder.completion()
    assert recorded is not None
    assert recorded["choices"][0]["logprobs"] == {"content": None, "refusal": [token("No.")]}


def test_logprobs_of_a_wrong_shape_leave_the_stream_unrecorded() -> None:
    recorder = StreamRecorder(10_000_000)
    recorder.feed(sse([part(0, {"content": "x"}, ["not", "an", "object"])]))
    assert recorder.failed == "malformed-chunk"


def test_replay_splits_the_logprobs_with_the_content() -> None:
    tokens = [token(t) for t in ("The", " quick", " brown", " fox", " jumps", ".")]
    text = "The quick brown fox jumps."
    chunks = replayed(completion(text, {"content": tokens, "refusal": None}))
    content_chunks = [c for c in chunks if c["delta"].get("content")]
    assert len(content_chunks) > 1
    for choice in content_chunks:  # each chunk's tokens spell its own content
        listed = choice["logprobs"]["content"]
        assert "".join(t["token"] for t in listed) == choice["delta"]["content"]
    assert [t for c in content_chunks for t in c["logprobs"]["content"]] == tokens
    assert chunks[0]["logprobs"] is None
    assert chunks[-1]["logprobs"] is None


def test_replay_without_logprobs_sends_null() -> None:
    chunks = replayed(completion("plain words here and there", None))
    assert all(c["logprobs"] is None for c in chunks)


def test_tokens_that_do_not_spell_the_content_each_go_to_the_piece_they_start_in() -> None:
    tokens = [token("caf"), token("bytes:\\xc3"), token(" au lait")]  # a split UTF-8 char
    split = content_pieces("café au lait", tokens, 5)
    assert "".join(piece for piece, _ in split) == "café au lait"
    assert [t for _, listed in split for t in listed or []] == tokens


def test_a_request_without_logprobs_gets_null_and_a_shallower_one_is_cut() -> None:
    stored = completion("Hi", {"content": [token("Hi", top=3)], "refusal": None})
    assert with_logprobs(stored, None)["choices"][0]["logprobs"] is None
    served = with_logprobs(stored, 1)["choices"][0]["logprobs"]
    assert [t["token"] for t in served["content"][0]["top_logprobs"]] == ["Hi"]
    assert stored["choices"][0]["logprobs"]["content"][0]["top_logprobs"][2]["token"] == "Hi~~"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, None),
        ({"logprobs": False, "top_logprobs": 3}, None),
        ({"logprobs": True}, 0),
        ({"logprobs": True, "top_logprobs": None}, 0),
        ({"logprobs": True, "top_logprobs": 4}, 4),
    ],
)
def test_requested_logprobs(body: dict[str, Any], expected: int | None) -> None:
    assert requested_logprobs(body) == expected


def test_an_answer_carries_logprobs_only_when_every_choice_has_them() -> None:
    assert logprobs_depth(completion("Hi", {"content": [], "refusal": None}), 2) == 2
    assert logprobs_depth(completion("Hi", None), 2) is None
    assert logprobs_depth(completion("Hi", {"content": [], "refusal": None}), None) is None


def entry(logprobs: int | None) -> CacheEntry:
    return CacheEntry("e", "ns", "t", "m", 0.0, 10.0, (b"{}",), logprobs=logprobs)


def test_an_entry_keeps_its_depth_and_serves_what_it_covers() -> None:
    assert CacheEntry.from_bytes(entry(3).to_bytes()).logprobs == 3
    assert CacheEntry.from_bytes(entry(None).to_bytes()).logprobs is None
    older = orjson.loads(entry(None).to_bytes())
    del older["logprobs"]  # written before entries kept a depth
    assert CacheEntry.from_bytes(orjson.dumps(older)).logprobs is None
    assert entry(3).serves_logprobs(None)
    assert entry(3).serves_logprobs(3)
    assert not entry(3).serves_logprobs(4)
    assert entry(None).serves_logprobs(None)
    assert not entry(None).serves_logprobs(0)


def test_an_answer_with_deeper_logprobs_starts_the_answer_set_over() -> None:
    deeper = entry(None).with_answer(b'{"a":2}', 3, 1.0, 11.0, 2)
    assert deeper.answers == (b'{"a":2}',)
    assert deeper.logprobs == 2
    shallower = deeper.with_answer(b'{"a":3}', 3, 2.0, 12.0, 1)
    assert shallower.answers == (b'{"a":2}', b'{"a":3}')
    assert shallower.logprobs == 1
    without = shallower.with_answer(b'{"a":4}', 3, 3.0, 13.0, None)
    assert len(without.answers) == 3
    assert without.logprobs is None


def test_logprobs_stay_out_of_the_keys_and_the_entry_records_its_depth() -> None:
    router = NamespaceRouter([NamespaceConfig(name="chat", models=["*"])])
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}
    _, plain = plan_request(router, {}, body, "t")
    _, asking = plan_request(router, {}, {**body, "logprobs": True, "top_logprobs": 2}, "t")
    assert asking.keys == plain.keys
    assert (plain.logprobs, asking.logprobs) == (None, 2)
    answer = completion("Hi", {"content": [token("Hi")], "refusal": None})
    assert asking.new_entry(answer, orjson.dumps(answer), 0.0).logprobs == 2
    assert plain.new_entry(answer, orjson.dumps(answer), 0.0).logprobs is None
    stored = orjson.loads(asking.new_entry(answer, orjson.dumps(answer), 0.0).request or b"")
    assert stored["top_logprobs"] == 2  # a warm-up asks for them again
