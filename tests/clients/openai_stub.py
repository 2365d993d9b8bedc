"""An OpenAI API stand-in for the client matrix, written from the public API reference.

It is independent of the node (imports nothing from `cachefleet_node`) and of the demo stub,
so a client that works against it works because both follow the API, not because they share
code. It serves, with every route behind bearer keys as the API does:

- `GET  /v1/models`, `GET /v1/models/{id}`: the model list and one model (404 when unknown)
- `POST /v1/chat/completions`: deterministic answers; `tools` make the model call the first
  function; `stream` sends `chat.completion.chunk` events (tool call fragments, `usage: null`
  on each chunk and a usage chunk when `stream_options.include_usage`), then `[DONE]`;
  `logprobs: true` adds `choices[].logprobs.content` (one entry per word token, with
  `top_logprobs` alternatives), split per chunk when streamed
- `POST /v1/responses`, `GET /v1/responses/{id}`: `response` objects with message or
  `function_call` output items; `stream` sends the typed events (`response.created` …
  `response.completed`) with `sequence_number`; `previous_response_id` must name a stored one
- `POST /v1/embeddings`: unit vectors per (model, item), `encoding_format` float or base64,
  `dimensions` on text-embedding-3 models

Errors have the API's shape `{"error": {"message", "type", "param", "code"}}`: 401
`invalid_api_key`, 404 `model_not_found`, 400 for missing or invalid parameters, and 429, 500
or 503 injected with `OpenAIStub.fail`. The tests run it in their own event loop and read
`calls` (per route) and `chat_requests` (the chat bodies received) directly; `latency` (seconds,
0 by default) delays every chat, responses and embeddings call, so concurrent calls overlap.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

GOOD_KEY = "sk-matrix-good"
OTHER_KEY = "sk-matrix-other"
WRONG_KEY = "sk-matrix-wrong"

#: Chat models and the dated snapshot the API names in its answers.
CHAT_MODELS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14"}
#: Embedding models and their native dimensions.
EMBEDDING_MODELS = {"text-embedding-3-small": 1536, "text-embedding-ada-002": 1536}

_WORDS = (
    "a cached answer is only as good as the question it answers so the stub writes a few "
    "plain words that depend on the whole conversation and nothing else"
).split()

_ERRORS = {
    429: (
        "Rate limit reached for requests in organization org-stub on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> Response:
    """An error in the API's shape."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response(orjson.dumps(body), status_code=status, headers=_headers())


def _headers() -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-request-id": f"req_{uuid.uuid4().hex}",
        "openai-processing-ms": "7",
        "openai-version": "2020-10-01",
    }


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=_headers())


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"}


def _ident(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _tokens(text: str) -> int:
    return max(1, len(text.split()) + len(text) // 12)


def _text_of(content: Any) -> str:
    """The text of a message content: a string or a list of text parts (chat or responses)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in {"text", "input_text", "output_text"}
        )
    return ""


def compose_answer(conversation: Any, last: str) -> str:
    """The model's reply: depends on the whole conversation, quotes the last turn."""
    seed = hashlib.sha256(orjson.dumps(conversation, option=orjson.OPT_SORT_KEYS)).digest()
    words = [_WORDS[(seed[i] + i) % len(_WORDS)] for i in range(10 + seed[0] % 10)]
    return f"On '{last[:60]}': " + " ".join(words) + "."


def token_logprobs(text: str, top: int) -> list[dict[str, Any]]:
    """The `logprobs.content` of a text: one token per word (the space leads), each with its
    `logprob`, UTF-8 `bytes` and `top` alternatives, the token itself first."""
    words = text.split(" ")
    tokens = [word if index == 0 else " " + word for index, word in enumerate(words)]
    out = []
    for token in tokens:
        seed = hashlib.sha256(token.encode()).digest()
        logprob = -seed[0] / 64
        alternatives = [(token, logprob)] + [
            (f"{token}{'~' * rank}", logprob - rank - seed[rank % 32] / 256)
            for rank in range(1, top)
        ]
        out.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": alt, "logprob": value, "bytes": list(alt.encode())}
                    for alt, value in alternatives[:top]
                ],
            }
        )
    return out


def _arguments_for(parameters: Any, text: str) -> str:
    """Arguments that satisfy a function's JSON schema's properties, from the user's text."""
    properties = (parameters or {}).get("properties") or {}
    values: dict[str, Any] = {}
    for name, schema in properties.items():
        kind = schema.get("type") if isinstance(schema, dict) else None
        if kind in {"number", "integer"}:
            values[name] = 1
        elif kind == "boolean":
            values[name] = True
        elif isinstance(schema, dict) and schema.get("enum"):
            values[name] = schema["enum"][0]
        else:
            values[name] = text
    return orjson.dumps(values).decode()


def embedding_of(model: str, item: str | list[int], dimensions: int | None) -> np.ndarray:
    """Deterministic unit vector for one input item; `dimensions` shortens and renormalises."""
    digest = hashlib.blake2b(orjson.dumps([model, item]), digest_size=8).digest()
    vector = np.random.default_rng(int.from_bytes(digest, "big")).standard_normal(
        dimensions or EMBEDDING_MODELS[model]
    )
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _sse(payload: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


class OpenAIStub:
    """The stub's state and its ASGI app (`.app`)."""

    def __init__(self, keys: tuple[str, ...] = (GOOD_KEY, OTHER_KEY)) -> None:
        self.keys = set(keys)
        self.calls: Counter[str] = Counter()
        self.chat_requests: list[dict[str, Any]] = []
        self.responses: dict[str, dict[str, Any]] = {}
        self.failures: list[int] = []
        self.latency = 0.0
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/v1/models/{model}", self.get_model, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/responses", self.create_response, methods=["POST"]),
                Route("/v1/responses/{ident}", self.get_response, methods=["GET"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            ]
        )

    def fail(self, status: int, times: int = 1) -> None:
        """Answer the next `times` calls (chat, responses, embeddings) with this error."""
        self.failures.extend([status] * times)

    # ------------------------------------------------------------------ common checks

    def _refusal(self, request: Request) -> Response | None:
        authorization = request.headers.get("authorization", "")
        if not authorization:
            return error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        key = authorization.removeprefix("Bearer ").strip()
        if key in self.keys:
            return None
        shown = f"{key[:3]}*****{key[-4:]}" if len(key) > 8 else key
        return error(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    def _injected(self) -> Response | None:
        if not self.failures:
            return None
        status = self.failures.pop(0)
        message, kind, code = _ERRORS[status]
        return error(status, message, kind=kind, code=code)

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly.)",
            )
        return body

    async def _accept(self, request: Request, route: str) -> dict[str, Any] | Response:
        """Count the call; the parsed body, or the error the API would answer first."""
        self.calls[route] += 1
        await asyncio.sleep(self.latency)
        refusal = self._refusal(request) or self._injected()
        if refusal is not None:
            return refusal
        return await self._body(request)

    @staticmethod
    def _unknown_model(model: Any, known: dict[str, Any]) -> Response | None:
        if isinstance(model, str) and model in known:
            return None
        if not model:
            return error(
                400,
                "you must provide a model parameter",
                param="model",
                code="missing_required_parameter",
            )
        return error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )

    # ------------------------------------------------------------------ models

    async def list_models(self, request: Request) -> Response:
        self.calls["models"] += 1
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        data = [_model(name) for name in (*CHAT_MODELS, *EMBEDDING_MODELS)]
        return _json({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        self.calls["models"] += 1
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        name = request.path_params["model"]
        missing = self._unknown_model(name, {**CHAT_MODELS, **EMBEDDING_MODELS})
        if missing is not None:
            return missing
        return _json(_model(name))

    # ------------------------------------------------------------------ chat completions

    async def chat(self, request: Request) -> Response:
        body = await self._accept(request, "chat")
        if isinstance(body, Response):
            return body
        self.chat_requests.append(body)
        problem = self._unknown_model(body.get("model"), CHAT_MODELS)
        if problem is not None:
            return problem
        top = body.get("top_logprobs")
        if top is not None and (not isinstance(top, int) or not 0 <= top <= 20):
            return error(400, "top_logprobs must be between 0 and 20.", param="top_logprobs")
        if top is not None and body.get("logprobs") is not True:
            return error(
                400,
                "logprobs must be set to true if top_logprobs is set.",
                param="top_logprobs",
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return error(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        text = _text_of(last.get("content"))
        tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
        call_tool = bool(tools) and last.get("role") == "user" and body.get("tool_choice") != "none"
        prompt_tokens = sum(_tokens(_text_of(m.get("content")) or "x") + 4 for m in messages)
        message: dict[str, Any] = {"role": "assistant", "refusal": None, "annotations": []}
        if call_tool:
            function = tools[0]["function"]
            arguments = _arguments_for(function.get("parameters"), text)
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": _ident("call_"),
                    "type": "function",
                    "function": {"name": function["name"], "arguments": arguments},
                }
            ]
            finish, completion_tokens = "tool_calls", _tokens(arguments) + 6
        else:
            if last.get("role") == "tool":
                text = f"the tool said {text}"
            message["content"] = compose_answer(messages, text)
            finish, completion_tokens = "stop", _tokens(message["content"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        head = {
            "id": _ident("chatcmpl-"),
            "created": int(time.time()),
            "model": CHAT_MODELS[body["model"]],
            "service_tier": "default",
            "system_fingerprint": "fp_5d2e0c1b3a",
        }
        logprobs = None
        if body.get("logprobs") is True:
            content = message.get("content")
            tokens = token_logprobs(content, top or 0) if isinstance(content, str) else None
            logprobs = {"content": tokens, "refusal": None}
        if not body.get("stream"):
            choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}
            return _json({**head, "object": "chat.completion", "choices": [choice], "usage": usage})
        self.calls["chat-stream"] += 1
        options = body.get("stream_options") or {}
        return StreamingResponse(
            self._chat_chunks(
                head, message, finish, usage, bool(options.get("include_usage")), logprobs
            ),
            media_type="text/event-stream",
            headers={k: v for k, v in _headers().items() if k != "content-type"},
        )

    @staticmethod
    async def _chat_chunks(
        head: dict[str, Any],
        message: dict[str, Any],
        finish: str,
        usage: dict[str, Any],
        include_usage: bool,
        logprobs: dict[str, Any] | None,
    ) -> AsyncIterator[bytes]:
        base = {**head, "object": "chat.completion.chunk"}
        extra = {"usage": None} if include_usage else {}

        def chunk(
            delta: dict[str, Any], reason: str | None = None, tokens: list[Any] | None = None
        ) -> bytes:
            lp = (
                None if logprobs is None or tokens is None else {"content": tokens, "refusal": None}
            )
            choice = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": reason}
            return _sse({**base, "choices": [choice], **extra, "obfuscation": "q9Xz"})

        if message.get("tool_calls"):
            call = message["tool_calls"][0]
            arguments = call["function"]["arguments"]
            first = {**call, "index": 0, "function": {"name": call["function"]["name"]}}
            first["function"]["arguments"] = ""
            yield chunk({"role": "assistant", "content": None, "tool_calls": [first]})
            for start in range(0, len(arguments), 7):
                piece = {"index": 0, "function": {"arguments": arguments[start : start + 7]}}
                yield chunk({"tool_calls": [piece]})
        else:
            yield chunk({"role": "assistant", "content": "", "refusal": None}, tokens=[])
            words = message["content"].split(" ")
            token_lists = (logprobs or {}).get("content") or [None] * len(words)
            for index, (word, token) in enumerate(zip(words, token_lists, strict=True)):
                yield chunk(
                    {"content": word if index == 0 else " " + word},
                    tokens=None if token is None else [token],
                )
        yield chunk({}, finish)
        if include_usage:
            yield _sse({**base, "choices": [], "usage": usage, "obfuscation": "Lw"})
        yield b"data: [DONE]\n\n"

    # ------------------------------------------------------------------ responses

    async def create_response(self, request: Request) -> Response:
        body = await self._accept(request, "responses")
        if isinstance(body, Response):
            return body
        problem = self._unknown_model(body.get("model"), CHAT_MODELS)
        if problem is not None:
            return problem
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        if not isinstance(items, list) or not items:
            return error(
                400,
                "Missing required parameter: 'input'.",
                param="input",
                code="missing_required_parameter",
            )
        previous = body.get("previous_response_id")
        history: list[Any] = []
        if previous is not None:
            if previous not in self.responses:
                return error(
                    400,
                    f"Previous response with id '{previous}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = [self.responses[previous]["output"]]
        last = items[-1] if isinstance(items[-1], dict) else {}
        tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
        ident = _ident("resp_")
        if last.get("type") == "function_call_output":
            text = f"the tool said {last.get('output')}"
        else:
            text = _text_of(last.get("content"))
        if tools and last.get("role") == "user" and body.get("tool_choice") != "none":
            item: dict[str, Any] = {
                "id": _ident("fc_"),
                "type": "function_call",
                "status": "completed",
                "call_id": _ident("call_"),
                "name": tools[0]["name"],
                "arguments": _arguments_for(tools[0].get("parameters"), text),
            }
            output_tokens = _tokens(item["arguments"]) + 6
        else:
            answer = compose_answer([body.get("instructions"), history, items], text)
            part = {"type": "output_text", "text": answer, "annotations": [], "logprobs": []}
            item = {
                "id": _ident("msg_"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
            output_tokens = _tokens(answer)
        input_tokens = sum(
            _tokens(_text_of(i.get("content")) or "x") for i in items if isinstance(i, dict)
        )
        response = {
            "id": ident,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": CHAT_MODELS[body["model"]],
            "output": [item],
            "parallel_tool_calls": True,
            "previous_response_id": previous,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
            "user": None,
            "metadata": body.get("metadata") or {},
        }
        if response["store"]:
            self.responses[ident] = response
        if not body.get("stream"):
            return _json(response)
        self.calls["responses-stream"] += 1
        return StreamingResponse(
            self._response_events(response),
            media_type="text/event-stream",
            headers={k: v for k, v in _headers().items() if k != "content-type"},
        )

    @staticmethod
    async def _response_events(response: dict[str, Any]) -> AsyncIterator[bytes]:
        sequence = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal sequence
            sequence += 1
            return _sse({"type": kind, "sequence_number": sequence - 1, **fields}, kind)

        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        yield event("response.created", response=pending)
        yield event("response.in_progress", response=pending)
        item = response["output"][0]
        where = {"item_id": item["id"], "output_index": 0}
        if item["type"] == "function_call":
            yield event(
                "response.output_item.added",
                output_index=0,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            arguments = item["arguments"]
            for start in range(0, len(arguments), 9):
                yield event(
                    "response.function_call_arguments.delta",
                    **where,
                    delta=arguments[start : start + 9],
                )
            yield event("response.function_call_arguments.done", **where, arguments=arguments)
        else:
            text = item["content"][0]["text"]
            yield event(
                "response.output_item.added",
                output_index=0,
                item={**item, "status": "in_progress", "content": []},
            )
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield event("response.content_part.added", **where, content_index=0, part=empty)
            for index, word in enumerate(text.split(" ")):
                yield event(
                    "response.output_text.delta",
                    **where,
                    content_index=0,
                    delta=word if index == 0 else " " + word,
                    logprobs=[],
                )
            yield event(
                "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
            )
            yield event(
                "response.content_part.done", **where, content_index=0, part=item["content"][0]
            )
        yield event("response.output_item.done", output_index=0, item=item)
        yield event("response.completed", response=response)

    async def get_response(self, request: Request) -> Response:
        self.calls["responses-get"] += 1
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        ident = request.path_params["ident"]
        if ident not in self.responses:
            return error(404, f"Response with id '{ident}' not found.", param="response_id")
        return _json(self.responses[ident])

    # ------------------------------------------------------------------ embeddings

    async def embeddings(self, request: Request) -> Response:
        body = await self._accept(request, "embeddings")
        if isinstance(body, Response):
            return body
        model = body.get("model")
        problem = self._unknown_model(model, EMBEDDING_MODELS)
        if problem is not None:
            return problem
        items = _embedding_items(body.get("input"))
        if items is None:
            return error(
                400, "'$.input' is invalid. Please check the API reference.", param="input"
            )
        encoding = body.get("encoding_format", "float")
        if encoding not in {"float", "base64"}:
            return error(
                400,
                f"'{encoding}' is not one of ['float', 'base64'] - 'encoding_format'",
                param="encoding_format",
            )
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            not model.startswith("text-embedding-3")
            or not isinstance(dimensions, int)
            or not 1 <= dimensions <= EMBEDDING_MODELS[model]
        ):
            return error(400, f"Invalid value for 'dimensions' = {dimensions}.", param="dimensions")
        data = []
        for index, item in enumerate(items):
            vector = embedding_of(model, item, dimensions)
            value: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if encoding == "base64"
                else [float(x) for x in vector]
            )
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(len(i) if isinstance(i, list) else _tokens(i) for i in items)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json({"object": "list", "data": data, "model": model, "usage": usage})


def _embedding_items(value: Any) -> list[str | list[int]] | None:
    """The items of an embeddings `input` (a string, token array, or a list of either)."""

    def is_tokens(item: Any) -> bool:
        return isinstance(item, list) and bool(item) and all(type(t) is int for t in item)

    if isinstance(value, str) and value:
        return [value]
    if is_tokens(value):
        return [value]
    texts = isinstance(value, list) and all(isinstance(i, str) and i for i in value)
    if value and (texts or (isinstance(value, list) and all(is_tokens(i) for i in value))):
        return list(value)
    return None
