"""Server-sent events: record an upstream stream into a completion, replay one as a stream."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

import orjson

__all__ = [
    "SseRecorder",
    "StreamRecorder",
    "UsageChunkFilter",
    "content_pieces",
    "event_data",
    "pieces",
    "replay_chunks",
]

DONE = b"data: [DONE]\n\n"
_OPTIONAL_META = ("system_fingerprint", "service_tier")  # kept when the upstream sends them


class SseRecorder:
    """Base of the stream recorders: feed raw SSE bytes as they pass through, and each
    complete event's data goes to `_data`. Recording stops (`failed` says why) past
    `max_bytes` or at an event `_data` cannot read; the relay itself goes on."""

    def __init__(self, max_bytes: int) -> None:
        self._buffer = b""
        self._max_bytes = max_bytes
        self._seen_bytes = 0
        self.failed: str | None = None

    def feed(self, data: bytes) -> None:
        """Consume the next bytes of the stream."""
        if self.failed:
            return
        self._seen_bytes += len(data)
        if self._seen_bytes > self._max_bytes:
            self.failed = "too-large"
            return
        # Normalise on the whole buffer: a CRLF may be split across two reads.
        self._buffer = (self._buffer + data).replace(b"\r\n", b"\n")
        while b"\n\n" in self._buffer and not self.failed:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            payload = event_data(event)
            if payload is None:
                continue  # comment / keep-alive
            try:
                self._data(payload)
            except (TypeError, ValueError, AttributeError, KeyError):
                # a chunk of an unexpected shape ("index": null, "choices": {}): the stream
                # still reaches the client byte for byte; it is just not recorded
                self.failed = "malformed-chunk"

    def _data(self, payload: bytes) -> None:
        """Record the data of one event."""
        raise NotImplementedError


def event_data(event: bytes) -> bytes | None:
    """The data of one SSE event (its `data:` lines joined), or None when it has none."""
    lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


class StreamRecorder(SseRecorder):
    """Records a chat-completion stream; `completion()` rebuilds the full answer.

    The completion is only available when the stream ended with `[DONE]`, carried no error
    event and every choice has a finish reason: partial or failed streams are never cached.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self.done = False
        self._meta: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Any = None

    def _data(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.failed = "malformed-chunk"
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            self.failed = "error-event"
            return
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if key in chunk and key not in self._meta:
                self._meta[key] = chunk[key]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choices = _list_or_none(chunk.get("choices"), "choices")
        for choice in choices:
            self._choice(choice)

    def _choice(self, choice: dict[str, Any]) -> None:
        index = int(choice.get("index", 0))
        state = self._choices.setdefault(
            index,
            {
                "content": [],
                "refusal": [],
                "tool_calls": {},
                "finish_reason": None,
                "logprobs": None,
            },
        )
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise TypeError("delta is not an object")
        if isinstance(delta.get("content"), str):
            state["content"].append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            state["refusal"].append(delta["refusal"])
        for call in _list_or_none(delta.get("tool_calls"), "tool_calls"):
            slot = state["tool_calls"].setdefault(
                int(call.get("index", 0)),
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
            )
            if call.get("id"):
                slot["id"] = call["id"]
            if call.get("type"):
                slot["type"] = call["type"]
            function = call.get("function") or {}
            slot["function"]["name"] += function.get("name") or ""
            slot["function"]["arguments"] += function.get("arguments") or ""
        if choice.get("finish_reason"):
            state["finish_reason"] = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if logprobs is not None:  # the token lists of this chunk, appended to the choice's
            if not isinstance(logprobs, dict):
                raise TypeError("logprobs is not an object")
            kept = state["logprobs"] = state["logprobs"] or {"content": None, "refusal": None}
            for part in ("content", "refusal"):
                if logprobs.get(part) is not None:
                    kept[part] = kept[part] or []
                    kept[part].extend(_list_or_none(logprobs[part], f"logprobs.{part}"))

    def completion(self) -> dict[str, Any] | None:
        """The complete chat.completion, or None if the stream must not be cached."""
        if self.failed or not self.done or not self._choices:
            return None
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            if state["finish_reason"] is None:
                return None
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(state["content"]) if state["content"] else None,
            }
            if state["refusal"]:
                message["refusal"] = "".join(state["refusal"])
            if state["tool_calls"]:
                message["tool_calls"] = [
                    state["tool_calls"][i] for i in sorted(state["tool_calls"])
                ]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": state["finish_reason"],
                    "logprobs": state["logprobs"],
                }
            )
        return {
            "id": self._meta.get("id", "chatcmpl-cachefleet"),
            "object": "chat.completion",
            "created": self._meta.get("created", 0),
            "model": self._meta.get("model", ""),
            **{key: self._meta[key] for key in _OPTIONAL_META if key in self._meta},
            "choices": choices,
            "usage": self._usage,
        }


class UsageChunkFilter:
    """Passes an SSE stream on event by event, leaving out the usage-only chunk
    (`"choices": []` with `usage`) that the node asked the upstream for to record the answer's
    token counts, when the client itself did not ask for it. Every other event goes on as it
    came (line endings as LF)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        """The complete events of the stream so far, minus a usage-only chunk."""
        self._buffer = (self._buffer + data).replace(b"\r\n", b"\n")
        out = []
        while b"\n\n" in self._buffer:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            if not _usage_only(event):
                out.append(event + b"\n\n")
        return b"".join(out)

    def flush(self) -> bytes:
        """Whatever is left at the end (an unterminated event goes on unchanged)."""
        rest, self._buffer = self._buffer, b""
        return rest


def _usage_only(event: bytes) -> bool:
    payload = event_data(event)
    if payload is None:
        return False
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == [] and "usage" in chunk


def _list_or_none(value: Any, name: str) -> list[Any]:
    """A list field of a chunk (absent or null: empty); anything else is malformed."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{name} is not a list")
    return value


def pieces(text: str, size: int) -> Iterator[str]:
    """Split text into chunks of about `size` characters, on spaces where possible."""
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            space = text.rfind(" ", start + 1, end)
            if space > start:
                end = space
        yield text[start:end]
        start = end


def content_pieces(
    content: str, tokens: list[Any] | None, size: int
) -> list[tuple[str, list[Any] | None]]:
    """The pieces a content replays in (about `size` characters), each with the logprobs of
    its tokens (None without logprobs): whole tokens per piece when the tokens spell the
    content, else each token in the piece where its text starts by the tokens' offsets."""
    if tokens is None:
        return [(piece, None) for piece in pieces(content, size)]
    texts = [token.get("token") if isinstance(token, dict) else None for token in tokens]
    spelled = [text if isinstance(text, str) else "" for text in texts]
    if "".join(spelled) == content and None not in texts:
        grouped: list[tuple[str, list[Any] | None]] = []
        piece, group = "", []
        for text, token in zip(spelled, tokens, strict=True):
            piece += text
            group.append(token)
            if len(piece) >= size:
                grouped.append((piece, group))
                piece, group = "", []
        if group:
            grouped.append((piece, group))
        return grouped
    split = list(pieces(content, size)) or [""]
    ends, end = [], 0
    for piece in split:
        end += len(piece)
        ends.append(end)
    groups: list[list[Any]] = [[] for _ in split]
    offset = 0
    for text, token in zip(spelled, tokens, strict=True):
        groups[min(bisect_right(ends, offset), len(split) - 1)].append(token)
        offset += len(text)
    return list(zip(split, groups, strict=True))


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def replay_chunks(
    completion: dict[str, Any], *, include_usage: bool, piece_chars: int = 24
) -> Iterator[bytes]:
    """A stored chat.completion as a valid `chat.completion.chunk` SSE stream ending in [DONE]."""
    head = {
        "id": completion.get("id", "chatcmpl-cachefleet"),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    for key in _OPTIONAL_META:
        if key in completion:
            head[key] = completion[key]
    for choice in completion.get("choices", []):
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        logprobs = choice.get("logprobs") if isinstance(choice.get("logprobs"), dict) else None

        def chunk(
            delta: dict[str, Any],
            finish: str | None = None,
            index: int = index,
            logprobs: dict[str, Any] | None = None,
        ) -> bytes:
            return _sse(
                {
                    **head,
                    "choices": [
                        {
                            "index": index,
                            "delta": delta,
                            "logprobs": logprobs,
                            "finish_reason": finish,
                        }
                    ],
                }
            )

        content = message.get("content")
        # A null content (tool calls, refusals) must stay null, not become "".
        yield chunk({"role": "assistant", "content": "" if isinstance(content, str) else None})
        if isinstance(content, str):
            tokens = logprobs.get("content") if logprobs is not None else None
            split = content_pieces(
                content, tokens if isinstance(tokens, list) else None, piece_chars
            )
            for piece, piece_tokens in split:
                lp = None if logprobs is None else {"content": piece_tokens, "refusal": None}
                yield chunk({"content": piece}, logprobs=lp)
        if isinstance(message.get("refusal"), str):
            lp = None if logprobs is None else {"content": None, "refusal": logprobs.get("refusal")}
            yield chunk({"refusal": message["refusal"]}, logprobs=lp)
        for call_index, call in enumerate(message.get("tool_calls") or []):
            yield chunk({"tool_calls": [{"index": call_index, **call}]})
        yield chunk({}, choice.get("finish_reason") or "stop")
    if include_usage:
        yield _sse({**head, "choices": [], "usage": completion.get("usage")})
    yield DONE
