"""Parsing and validation of OpenAI chat-completion requests (pure, no I/O).

A body is validated by the `openai` package's own request type (`core.validation`); the
original JSON object is kept untouched, so unknown fields reach the upstream as sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from cachefleet_node.core.errors import RequestError
from cachefleet_node.core.validation import ApiBody, Bounds

__all__ = [
    "CHAT_BODY",
    "ChatCompletionBody",
    "ChatRequest",
    "decode_json_object",
    "parse_chat_request",
]


class ChatCompletionBody(CompletionCreateParamsBase, total=False):
    """The SDK's chat-completion parameters, with `stream` as its two variants (streaming,
    not streaming) accept it together: true, false or null."""

    stream: bool | None


#: Chat-completion bodies, with the API's ranges of the fields the cache reads.
CHAT_BODY = ApiBody(
    ChatCompletionBody,
    {
        "model": Bounds(1, 256, length=True),
        "messages": Bounds(1, 10_000, length=True),
        "temperature": Bounds(0, 2),
        "top_p": Bounds(0, 1),
        "n": Bounds(1, 128),
        "max_tokens": Bounds(low=1),
        "max_completion_tokens": Bounds(low=1),
    },
)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated request: the original body plus the fields the cache needs."""

    body: dict[str, Any]
    model: str
    stream: bool
    temperature: float | None
    n: int

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The messages exactly as sent."""
        return list(self.body["messages"])

    @property
    def include_usage(self) -> bool:
        """Whether a streamed response should end with a usage chunk."""
        options = self.body.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be a UTF-8 JSON object, or raise a 400."""
    if not raw:
        raise RequestError(400, "request body is empty; expected a JSON object", code="empty_body")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            400, f"request body is not valid UTF-8 (byte {exc.start})", code="invalid_encoding"
        ) from exc
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(
            400, f"request body is not valid JSON: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(value, dict):
        raise RequestError(400, "request body must be a JSON object", code="invalid_json")
    too_deep = _deeper_than(value, MAX_JSON_DEPTH)
    if too_deep is not None:
        raise RequestError(
            400,
            f"request body nests deeper than {MAX_JSON_DEPTH} levels at {too_deep}",
            param=too_deep,
            code="invalid_json",
        )
    return value


#: Deepest nesting of objects and arrays a request body may have (OpenAI's own bodies need
#: under 10; tool schemas a few more).
MAX_JSON_DEPTH = 64


def _deeper_than(value: Any, limit: int) -> str | None:
    """The path of the first value nested deeper than `limit`, or None (iterative: a deep
    body cannot exhaust the stack here or later)."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > limit:
            return path or "body"
        if isinstance(node, dict):
            stack.extend(
                (child, depth + 1, f"{path}.{key}" if path else str(key))
                for key, child in node.items()
            )
        elif isinstance(node, list):
            stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(node))
    return None


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    """Validate a decoded chat-completion body; raise `RequestError` naming the bad field."""
    CHAT_BODY.check(body)
    temperature = body.get("temperature")
    return ChatRequest(
        body=body,
        model=body["model"],
        stream=bool(body.get("stream")),
        temperature=None if temperature is None else float(temperature),
        n=body.get("n") or 1,
    )
