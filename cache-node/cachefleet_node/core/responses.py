"""The OpenAI Responses API (`POST /v1/responses`) in the cache: which requests may be cached,
their keys, recording a typed event stream, and replaying a stored response (pure, no I/O).

A body is validated by the `openai` package's own `ResponseCreateParams` (`core.validation`).
A request is cached only when its answer depends on nothing but its body:

- no `model` (the API takes it from a stored `prompt`): bypass, since the node routes by
  model; no `input`: bypass;

- `previous_response_id` or `conversation` set (server-side state): bypass;
- `background: true`: bypass (the answer is fetched later from the server);
- `store` not `false` (the API's default is `true`): bypass, since a replayed response was
  never stored upstream, so a later `GET /v1/responses/{id}` or a follow-up turn naming it
  would fail;
- `prompt` (a server-side prompt template, whose versions change): bypass;
- a tool other than `function` (web search, file search, code interpreter, computer use,
  MCP, image generation ...): bypass; function tools are cached like chat tool calls;
- an input item other than a message, `function_call` or `function_call_output`
  (`item_reference`, outputs of server tools ...): bypass. (A message's content parts are
  those the SDK's types allow: text, refusal, image and file parts.)

A cacheable request is keyed as a chat request would be: `instructions` become the system
message and the input items the messages (text parts as text), so the semantic tier embeds
the user turn's text the same way, within a partition of everything else. An `api` field
keeps these keys apart from chat keys, with which they share the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from openai.types.responses.response_create_params import ResponseCreateParamsBase

from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.request import ChatRequest
from cachefleet_node.core.stream import SseRecorder, content_pieces, pieces
from cachefleet_node.core.validation import ApiBody, Bounds

__all__ = [
    "RESPONSES_BODY",
    "ResponseCreateBody",
    "ResponsesRequest",
    "ResponsesStreamRecorder",
    "parse_responses_request",
    "replay_events",
    "response_cacheable",
    "served_response",
]

#: Input item types a cacheable request may carry (a message may also omit `type`).
INPUT_ITEM_TYPES = frozenset({"message", "function_call", "function_call_output"})
#: Content part types of input messages keyed as chat text parts.
TEXT_PART_TYPES = frozenset({"input_text", "output_text"})
#: Output items a stored response may hold, and the prefix of their fresh ids on a hit.
OUTPUT_ITEM_PREFIXES = {"message": "msg_", "function_call": "fc_", "reasoning": "rs_"}
_ITEM_ROLES = {"function_call": "assistant", "function_call_output": "tool"}


class ResponseCreateBody(ResponseCreateParamsBase, total=False):
    """The SDK's Responses parameters, with `stream` as its two variants (streaming, not
    streaming) accept it together: true, false or null."""

    stream: bool | None


#: Responses bodies, with the API's ranges of the fields the cache reads.
RESPONSES_BODY = ApiBody(
    ResponseCreateBody,
    {
        "model": Bounds(1, 256, length=True),
        "input": Bounds(low=1, length=True),
        "temperature": Bounds(0, 2),
        "top_p": Bounds(0, 1),
        "max_output_tokens": Bounds(low=1),
        "top_logprobs": Bounds(0, 20),
    },
)


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """A validated request: its chat form (keys, policies) and why it bypasses, if it does."""

    chat: ChatRequest
    bypass: str | None


def parse_responses_request(body: dict[str, Any]) -> ResponsesRequest:
    """Validate a decoded `POST /v1/responses` body; `RequestError` naming the bad field."""
    RESPONSES_BODY.check(body)
    given = body.get("input")
    items: list[dict[str, Any]] = (
        [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    )
    reason = _bypass_reason(body, items)
    instructions = body.get("instructions")
    messages = [] if instructions is None else [{"role": "system", "content": instructions}]
    if reason is None:
        messages += [_as_message(item) for item in items]
    rest = {key: value for key, value in body.items() if key not in ("input", "instructions")}
    temperature = body.get("temperature")
    chat = ChatRequest(
        body={**rest, "api": "responses", "messages": messages},
        model=body.get("model") or "",
        stream=bool(body.get("stream")),
        temperature=None if temperature is None else float(temperature),
        n=1,
    )
    return ResponsesRequest(chat=chat, bypass=reason)


def _bypass_reason(body: dict[str, Any], items: list[dict[str, Any]]) -> str | None:
    """Why a request must go upstream uncached (the rules in the module docstring)."""
    if "model" not in body:
        return "no-model"
    if not items:
        return "no-input"
    if body.get("previous_response_id") is not None:
        return "previous-response"
    if body.get("conversation") is not None:
        return "conversation"
    if body.get("background") is True:
        return "background"
    if body.get("store") is not False:
        return "store"
    if body.get("prompt") is not None:
        return "prompt-template"
    if any(tool.get("type") != "function" for tool in body.get("tools") or []):
        return "server-tool"
    if any(item.get("type", "message") not in INPUT_ITEM_TYPES for item in items):
        return "input-item"
    return None


def _as_message(item: dict[str, Any]) -> dict[str, Any]:
    """An input item as the chat message keying it: text parts as chat text parts, items
    without a role (function calls and their outputs) under the role chat gives them."""
    kind = item.get("type", "message")
    if kind != "message":
        return {"role": _ITEM_ROLES[kind], **item}
    content = item.get("content")
    if isinstance(content, list):
        content = [
            {"type": "text", "text": part.get("text")}
            if part.get("type") in TEXT_PART_TYPES
            else part
            for part in content
        ]
    return {**{k: v for k, v in item.items() if k != "type"}, "content": content}


# ------------------------------------------------------------------------- stored answers


def response_cacheable(response: Any, size: int, namespace: NamespaceConfig) -> str | None:
    """None if a `response` object may be stored, else the reason it may not: it completed,
    and holds only messages, function calls and reasoning items, of a replayable shape."""
    if size > namespace.max_entry_bytes:
        return "too-large"
    if not isinstance(response, dict) or response.get("object") != "response":
        return "malformed"
    if response.get("status") != "completed" or response.get("error"):
        return "unfinished"
    output = response.get("output")
    if not isinstance(output, list) or not output:
        return "no-choices"
    for item in output:
        if not isinstance(item, dict) or item.get("type") not in OUTPUT_ITEM_PREFIXES:
            return "malformed"
        if item["type"] == "message" and not _replayable_parts(item.get("content")):
            return "malformed"
        if item["type"] == "function_call" and not (
            isinstance(item.get("name"), str) and isinstance(item.get("arguments"), str)
        ):
            return "malformed"
    return None


def _replayable_parts(content: Any) -> bool:
    return isinstance(content, list) and all(
        isinstance(part, dict)
        and (
            (part.get("type") == "output_text" and isinstance(part.get("text"), str))
            or (part.get("type") == "refusal" and isinstance(part.get("refusal"), str))
        )
        for part in content
    )


def served_response(stored: dict[str, Any], created_at: int) -> dict[str, Any]:
    """A stored response as a hit serves it: a fresh `id`, `created_at` and item ids, text
    parts with the `annotations` and `logprobs` lists the API always sends (empty when the
    upstream left them out), and its usage with every input token reported as cached
    (`input_tokens_details.cached_tokens`), the way OpenAI reports its prompt cache."""
    served = {
        **stored,
        "id": f"resp_cf{uuid.uuid4().hex}",
        "created_at": created_at,
        "output": [
            {
                **item,
                "id": f"{OUTPUT_ITEM_PREFIXES[item['type']]}cf{uuid.uuid4().hex}",
                **({"content": _with_lists(item["content"])} if item["type"] == "message" else {}),
            }
            for item in stored["output"]
        ],
    }
    usage = stored.get("usage")
    if isinstance(usage, dict):
        details = usage.get("input_tokens_details")
        tokens = usage.get("input_tokens")
        served["usage"] = {
            **usage,
            "input_tokens_details": {
                **(details if isinstance(details, dict) else {}),
                "cached_tokens": tokens if isinstance(tokens, int) else 0,
            },
        }
    return served


def _with_lists(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Message parts with `annotations` and `logprobs` lists on every text part."""
    return [
        {
            **part,
            "annotations": _list(part.get("annotations")),
            "logprobs": _list(part.get("logprobs")),
        }
        if part["type"] == "output_text"
        else part
        for part in content
    ]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ------------------------------------------------------------------------------- streams


class ResponsesStreamRecorder(SseRecorder):
    """Records a streamed response: `completion()` is the `response` of its
    `response.completed` event, the whole answer.

    Nothing is recorded from a stream with an `error` or `response.failed` /
    `response.incomplete` event, a malformed event, or no `response.completed`.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self._response: dict[str, Any] | None = None

    def _data(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            return  # sent by some compatible upstreams after `response.completed`
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.failed = "malformed-chunk"
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind in ("error", "response.failed", "response.incomplete"):
            self.failed = "error-event"
        elif kind == "response.completed":
            response = event.get("response")
            if isinstance(response, dict):
                self._response = response
            else:
                self.failed = "malformed-chunk"
        elif not isinstance(kind, str):
            self.failed = "malformed-chunk"

    def completion(self) -> dict[str, Any] | None:
        """The completed response, or None if the stream must not be cached."""
        return None if self.failed else self._response


def replay_events(response: dict[str, Any], *, piece_chars: int = 24) -> Iterator[bytes]:
    """A served response as the typed event stream of the API (`response.created` ...
    `response.completed`, numbered by `sequence_number`), which the SDKs parse."""
    events: list[dict[str, Any]] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    emit("response.created", response=pending)
    emit("response.in_progress", response=pending)
    for index, item in enumerate(response["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            for part_index, part in enumerate(item["content"]):
                _part_events(emit, where | {"content_index": part_index}, part, piece_chars)
        elif item["type"] == "function_call":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for piece in pieces(item["arguments"], piece_chars):
                emit("response.function_call_arguments.delta", **where, delta=piece)
            emit(
                "response.function_call_arguments.done",
                **where,
                name=item["name"],
                arguments=item["arguments"],
            )
        else:  # reasoning: announced whole
            emit("response.output_item.added", output_index=index, item=item)
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed", response=response)
    for event in events:
        yield b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def _part_events(
    emit: Callable[..., None], where: dict[str, Any], part: dict[str, Any], size: int
) -> None:
    """The events streaming one content part of a message: its text (or refusal) in pieces,
    each text piece with the logprobs of its tokens (none, `[]`, when the part has none)."""
    if part["type"] == "output_text":
        logprobs = _list(part.get("logprobs"))
        empty = {**part, "text": "", "annotations": [], "logprobs": []}
        emit("response.content_part.added", **where, part=empty)
        for piece, tokens in content_pieces(part["text"], logprobs or None, size):
            emit("response.output_text.delta", **where, delta=piece, logprobs=tokens or [])
        emit("response.output_text.done", **where, text=part["text"], logprobs=logprobs)
    else:
        emit("response.content_part.added", **where, part={**part, "refusal": ""})
        for piece in pieces(part["refusal"], size):
            emit("response.refusal.delta", **where, delta=piece)
        emit("response.refusal.done", **where, refusal=part["refusal"])
    emit("response.content_part.done", **where, part=part)
