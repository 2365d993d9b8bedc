"""Parsing and validation of OpenAI chat-completion requests (pure, no I/O).

The original JSON object is kept untouched so unknown fields reach the upstream as sent;
validation covers only the fields the cache depends on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cachefleet_node.core.errors import RequestError

__all__ = [
    "ChatRequest",
    "ChatRequestModel",
    "decode_json_object",
    "parse_chat_request",
    "validation_error_to_request_error",
]

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ContentPart(BaseModel):
    """One part of a multi-part message content."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: str = Field(min_length=1)


class Message(BaseModel):
    """One chat message; extra fields (name, tool_calls, ...) are allowed."""

    model_config = ConfigDict(extra="allow", strict=True)
    role: Role
    content: str | list[ContentPart] | None = None


class ChatRequestModel(BaseModel):
    """Schema of the fields the cache reads from a chat-completion request."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1, max_length=10_000)
    stream: bool | None = False  # null is accepted, as by the OpenAI API
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None


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


def _param_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in {"str", "list[ContentPart]", "none", "float", "int"}:
            continue  # union branch names pydantic adds to the location
        else:
            path += f".{part}" if path else str(part)
    return path


def validation_error_to_request_error(error: ValidationError) -> RequestError:
    """The most specific validation error as a 400 that names the parameter."""
    details = error.errors()
    deepest = max(details, key=lambda item: len(item["loc"]))
    param = _param_path(tuple(deepest["loc"]))
    if deepest["type"] == "missing":
        return RequestError(
            400,
            f"missing required parameter: '{param}'",
            param=param,
            code="missing_required_parameter",
        )
    # A union (e.g. string or list of parts) reports one error per branch: name them all.
    messages = [item["msg"] for item in details if _param_path(tuple(item["loc"])) == param]
    reason = " or ".join(dict.fromkeys(messages))
    return RequestError(
        400, f"invalid value for '{param}': {reason}", param=param, code="invalid_value"
    )


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    """Validate a decoded chat-completion body; raise `RequestError` naming the bad field."""
    try:
        model = ChatRequestModel.model_validate(body)
    except ValidationError as exc:
        raise validation_error_to_request_error(exc) from exc
    return ChatRequest(
        body=body,
        model=model.model,
        stream=bool(model.stream),
        temperature=model.temperature,
        n=model.n or 1,
    )
