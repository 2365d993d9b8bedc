"""One driver per client of the matrix: each calls its real, unmodified client the way an
application does and reports what the client parsed, in one shape the scenarios check.

Sync clients run in a worker thread: the node under test serves from the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import openai
import orjson
from openai_stub import EMBEDDING_MODELS, GOOD_KEY

# litellm fetches its price map from the network when imported unless told to use its own copy
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CHAT_MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = next(iter(EMBEDDING_MODELS))
CACHE_HEADER = "x-cachefleet-cache"
#: `cache` (or `id`) of an answer whose client API gives no access to the response headers.
HIDDEN = "(headers not exposed by this client API)"

#: Error classes every client has under these names (the `openai` SDKs, litellm's own).
ERROR_NAMES = (
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "RateLimitError",
    "BadRequestError",
    "InternalServerError",
)

#: What a scenario may need from a client; a driver lists what its client can do.
FEATURES = frozenset({"chat", "stream", "tools", "embeddings", "models", "responses"})


@dataclass(frozen=True)
class Usage:
    """Token counts as the client reports them; `cached` is None if it has no such field."""

    prompt: int
    completion: int
    total: int
    cached: int | None


@dataclass(frozen=True)
class ToolCall:
    id: str | None
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """A chat or responses answer as parsed by the client. `cache` is the node's
    `x-cachefleet-cache` header (None when absent), or `HIDDEN`."""

    text: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    cache: str | None = None
    id: str | None = None  # the completion's `id` (chat only), or `HIDDEN`


@dataclass(frozen=True)
class Vectors:
    vectors: list[list[float]]
    cache: str | None


@dataclass(frozen=True)
class Listing:
    ids: list[str]
    cache: str | None


def tool_call(ident: str | None, name: str, arguments: str | dict[str, Any]) -> ToolCall:
    """A tool call with its arguments decoded (they must be a JSON object)."""
    decoded = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    return ToolCall(ident, name, decoded)


def openai_usage(usage: Any) -> Usage | None:
    """Usage of the `openai` SDK's (and litellm's) chat types."""
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, cached)


def reply_from_completion(completion: Any, cache: str | None) -> Reply:
    """A non-streamed chat.completion (openai SDK or litellm ModelResponse)."""
    message = completion.choices[0].message
    calls = tuple(
        tool_call(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []
    )
    usage = openai_usage(getattr(completion, "usage", None))
    return Reply(message.content, calls, usage, cache, completion.id)


class ChunkAccumulator:
    """Folds chat.completion.chunk objects (openai SDK or litellm) into one reply."""

    def __init__(self) -> None:
        self.text: str | None = None
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage: Usage | None = None
        self.ids: set[str] = set()

    def add(self, chunk: Any) -> None:
        self.ids.add(chunk.id)
        usage = openai_usage(getattr(chunk, "usage", None))
        if usage is not None:
            self.usage = usage
        for choice in chunk.choices:
            delta = choice.delta
            if isinstance(delta.content, str):
                self.text = (self.text or "") + delta.content
            for piece in delta.tool_calls or []:
                call = self.calls.setdefault(piece.index, {"id": None, "name": "", "args": ""})
                call["id"] = piece.id or call["id"]
                if piece.function is not None:
                    call["name"] += piece.function.name or ""
                    call["args"] += piece.function.arguments or ""

    def reply(self, cache: str | None) -> Reply:
        calls = tuple(
            tool_call(c["id"], c["name"], c["args"]) for _, c in sorted(self.calls.items())
        )
        assert len(self.ids) == 1, f"one stream, one id: {self.ids}"
        return Reply(self.text, calls, self.usage, cache, self.ids.pop())


def chat_params(
    messages: list[dict[str, Any]],
    model: str,
    stream: bool,
    include_usage: bool,
    tools: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The chat request as an application passes it to the `openai` SDK or litellm."""
    params: dict[str, Any] = {"model": model, "messages": messages}
    if tools:
        params["tools"] = tools
    if stream:
        params["stream"] = True
        if include_usage:
            params["stream_options"] = {"include_usage": True}
    return params


def stored(store: bool | None) -> dict[str, Any]:
    """The `store` parameter of a Responses API call, left out (the API's default) for None."""
    return {} if store is None else {"store": store}


def responses_text(events: list[Any]) -> str:
    """The text of a streamed Responses API answer; the stream must have completed."""
    assert events[-1].type == "response.completed", [e.type for e in events]
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


class Driver:
    """The interface every client's driver implements."""

    name: ClassVar[str]
    features: ClassVar[frozenset[str]] = FEATURES
    error_base: ClassVar[type[BaseException]]
    error_module: ClassVar[Any]

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url  # the node's `/v1`

    def error_name(self, error: BaseException) -> str:
        """The name of the client's own error class this error is an instance of."""
        for name in ERROR_NAMES:
            if isinstance(error, getattr(self.error_module, name)):
                return name
        return f"{type(error).__module__}.{type(error).__qualname__}"

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        key: str = GOOD_KEY,
        model: str = CHAT_MODEL,
        stream: bool = False,
        include_usage: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> Reply:
        raise NotImplementedError

    async def embed(self, texts: list[str], *, key: str = GOOD_KEY) -> Vectors:
        raise NotImplementedError

    async def models(self, *, key: str = GOOD_KEY) -> Listing:
        raise NotImplementedError

    async def respond(
        self, text: str, *, key: str = GOOD_KEY, stream: bool = False, store: bool | None = None
    ) -> Reply:
        raise NotImplementedError


class OpenAISyncDriver(Driver):
    """`openai.OpenAI`, the SDK's sync client."""

    name = "openai-sync"
    error_base = openai.APIError
    error_module = openai

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0)

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        key: str = GOOD_KEY,
        model: str = CHAT_MODEL,
        stream: bool = False,
        include_usage: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> Reply:
        params = chat_params(messages, model, stream, include_usage, tools)

        def call() -> Reply:
            raw = self.client(key).chat.completions.with_raw_response.create(**params)
            if not stream:
                return reply_from_completion(raw.parse(), raw.headers.get(CACHE_HEADER))
            folded = ChunkAccumulator()
            for chunk in raw.parse():
                folded.add(chunk)
            return folded.reply(raw.headers.get(CACHE_HEADER))

        return await asyncio.to_thread(call)

    async def embed(self, texts: list[str], *, key: str = GOOD_KEY) -> Vectors:
        def call() -> Vectors:
            raw = self.client(key).embeddings.with_raw_response.create(
                model=EMBEDDING_MODEL, input=texts
            )
            vectors = [item.embedding for item in raw.parse().data]
            return Vectors(vectors, raw.headers.get(CACHE_HEADER))

        return await asyncio.to_thread(call)

    async def models(self, *, key: str = GOOD_KEY) -> Listing:
        def call() -> Listing:
            raw = self.client(key).models.with_raw_response.list()
            return Listing([m.id for m in raw.parse()], raw.headers.get(CACHE_HEADER))

        return await asyncio.to_thread(call)

    async def respond(
        self, text: str, *, key: str = GOOD_KEY, stream: bool = False, store: bool | None = None
    ) -> Reply:
        def call() -> Reply:
            raw = self.client(key).responses.with_raw_response.create(
                model=CHAT_MODEL, input=text, stream=stream, **stored(store)
            )
            cache = raw.headers.get(CACHE_HEADER)
            if not stream:
                return Reply(raw.parse().output_text, cache=cache)
            return Reply(responses_text(list(raw.parse())), cache=cache)

        return await asyncio.to_thread(call)


class OpenAIAsyncDriver(Driver):
    """`openai.AsyncOpenAI`, the SDK's async client."""

    name = "openai-async"
    error_base = openai.APIError
    error_module = openai

    def client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0)

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        key: str = GOOD_KEY,
        model: str = CHAT_MODEL,
        stream: bool = False,
        include_usage: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> Reply:
        params = chat_params(messages, model, stream, include_usage, tools)
        raw = await self.client(key).chat.completions.with_raw_response.create(**params)
        if not stream:
            return reply_from_completion(raw.parse(), raw.headers.get(CACHE_HEADER))
        folded = ChunkAccumulator()
        async for chunk in raw.parse():
            folded.add(chunk)
        return folded.reply(raw.headers.get(CACHE_HEADER))

    async def embed(self, texts: list[str], *, key: str = GOOD_KEY) -> Vectors:
        raw = await self.client(key).embeddings.with_raw_response.create(
            model=EMBEDDING_MODEL, input=texts
        )
        vectors = [item.embedding for item in raw.parse().data]
        return Vectors(vectors, raw.headers.get(CACHE_HEADER))

    async def models(self, *, key: str = GOOD_KEY) -> Listing:
        raw = await self.client(key).models.with_raw_response.list()
        return Listing([m.id async for m in raw.parse()], raw.headers.get(CACHE_HEADER))

    async def respond(
        self, text: str, *, key: str = GOOD_KEY, stream: bool = False, store: bool | None = None
    ) -> Reply:
        raw = await self.client(key).responses.with_raw_response.create(
            model=CHAT_MODEL, input=text, stream=stream, **stored(store)
        )
        cache = raw.headers.get(CACHE_HEADER)
        if not stream:
            return Reply(raw.parse().output_text, cache=cache)
        return Reply(responses_text([event async for event in raw.parse()]), cache=cache)


class LiteLLMDriver(Driver):
    """`litellm.completion` / `embedding` / `responses` with the `openai/` provider and
    `api_base` pointed at the node. litellm keeps the upstream's headers in
    `_hidden_params["additional_headers"]` prefixed `llm_provider-`. Its model listing
    (`get_valid_models`) shows no headers, keeps the list per endpoint and answers `[]` on
    any error."""

    name = "litellm"
    error_base = openai.APIError  # litellm's error classes subclass the SDK's

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        import litellm

        self.litellm = litellm
        self.error_module = litellm

    def _cache(self, response: Any) -> str | None:
        headers = (getattr(response, "_hidden_params", None) or {}).get("additional_headers")
        return (headers or {}).get(f"llm_provider-{CACHE_HEADER}")

    def _common(self, key: str) -> dict[str, Any]:
        return {"api_base": self.base_url, "api_key": key, "max_retries": 0, "num_retries": 0}

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        key: str = GOOD_KEY,
        model: str = CHAT_MODEL,
        stream: bool = False,
        include_usage: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> Reply:
        params = chat_params(messages, f"openai/{model}", stream, include_usage, tools)

        def call() -> Reply:
            response = self.litellm.completion(**params, **self._common(key))
            if not stream:
                return reply_from_completion(response, self._cache(response))
            folded = ChunkAccumulator()
            for chunk in response:
                folded.add(chunk)
            return folded.reply(self._cache(response))

        return await asyncio.to_thread(call)

    async def embed(self, texts: list[str], *, key: str = GOOD_KEY) -> Vectors:
        def call() -> Vectors:
            response = self.litellm.embedding(
                model=f"openai/{EMBEDDING_MODEL}", input=texts, **self._common(key)
            )
            return Vectors([item["embedding"] for item in response.data], self._cache(response))

        return await asyncio.to_thread(call)

    async def models(self, *, key: str = GOOD_KEY) -> Listing:
        def call() -> Listing:
            ids = self.litellm.get_valid_models(
                check_provider_endpoint=True,
                custom_llm_provider="openai",
                api_key=key,
                api_base=self.base_url,
            )
            return Listing([i.removeprefix("openai/") for i in ids], HIDDEN)

        return await asyncio.to_thread(call)

    async def respond(
        self, text: str, *, key: str = GOOD_KEY, stream: bool = False, store: bool | None = None
    ) -> Reply:
        def call() -> Reply:
            response = self.litellm.responses(
                model=f"openai/{CHAT_MODEL}",
                input=text,
                stream=stream,
                **stored(store),
                **self._common(key),
            )
            if not stream:
                return Reply(response.output[0].content[0].text, cache=self._cache(response))
            return Reply(responses_text(list(response)), cache=self._cache(response))

        return await asyncio.to_thread(call)


class LangChainDriver(Driver):
    """`langchain_openai.ChatOpenAI(base_url=node)` (invoke, stream, bind_tools, the Responses
    API with `use_responses_api`) and `OpenAIEmbeddings`; LangChain has no model listing.
    Errors are the `openai` SDK's, which LangChain raises as they are."""

    name = "langchain-openai"
    features = FEATURES - {"models"}
    error_base = openai.APIError
    error_module = openai

    def _chat_model(self, key: str, model: str, **options: Any) -> Any:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=model,
            base_url=self.base_url,
            api_key=key,
            max_retries=0,
            include_response_headers=True,
            **options,
        )

    @staticmethod
    def _messages(messages: list[dict[str, Any]]) -> list[Any]:
        """OpenAI-format messages as LangChain's message objects."""
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

        converted: list[Any] = []
        for message in messages:
            role, content = message["role"], message.get("content") or ""
            if role == "user":
                converted.append(HumanMessage(content))
            elif role == "system":
                converted.append(SystemMessage(content))
            elif role == "tool":
                converted.append(ToolMessage(content, tool_call_id=message["tool_call_id"]))
            else:
                calls = [
                    {
                        "id": c["id"],
                        "name": c["function"]["name"],
                        "args": orjson.loads(c["function"]["arguments"]),
                    }
                    for c in message.get("tool_calls") or []
                ]
                converted.append(AIMessage(content, tool_calls=calls))
        return converted

    @staticmethod
    def _reply(message: Any, streamed: bool = False) -> Reply:
        """The reply of an AIMessage; a streamed one carries no completion `id` in LangChain."""
        usage = message.usage_metadata
        counted = (
            Usage(
                usage["input_tokens"],
                usage["output_tokens"],
                usage["total_tokens"],
                (usage.get("input_token_details") or {}).get("cache_read"),
            )
            if usage
            else None
        )
        calls = tuple(tool_call(c["id"], c["name"], c["args"]) for c in message.tool_calls)
        headers = message.response_metadata.get("headers") or {}
        ident = HIDDEN if streamed else message.response_metadata.get("id")
        return Reply(message.text or None, calls, counted, headers.get(CACHE_HEADER), ident)

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        key: str = GOOD_KEY,
        model: str = CHAT_MODEL,
        stream: bool = False,
        include_usage: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> Reply:
        chat_model = self._chat_model(key, model, stream_usage=include_usage)
        runnable = chat_model.bind_tools(tools) if tools else chat_model
        inputs = self._messages(messages)

        def call() -> Reply:
            if not stream:
                return self._reply(runnable.invoke(inputs))
            chunks = list(runnable.stream(inputs))
            merged = chunks[0]
            for chunk in chunks[1:]:
                merged = merged + chunk
            return self._reply(merged, streamed=True)

        return await asyncio.to_thread(call)

    async def embed(self, texts: list[str], *, key: str = GOOD_KEY) -> Vectors:
        from langchain_openai import OpenAIEmbeddings

        embeddings = OpenAIEmbeddings(
            model=EMBEDDING_MODEL,
            base_url=self.base_url,
            api_key=key,
            max_retries=0,
            check_embedding_ctx_length=False,  # no tiktoken download: send the texts as they are
        )
        return Vectors(await asyncio.to_thread(lambda: embeddings.embed_documents(texts)), HIDDEN)

    async def respond(
        self, text: str, *, key: str = GOOD_KEY, stream: bool = False, store: bool | None = None
    ) -> Reply:
        chat_model = self._chat_model(key, CHAT_MODEL, use_responses_api=True, **stored(store))
        message = {"role": "user", "content": text}

        def call() -> Reply:
            if not stream:
                return self._reply(chat_model.invoke([message]))
            chunks = list(chat_model.stream([message]))
            merged = chunks[0]
            for chunk in chunks[1:]:
                merged = merged + chunk
            return self._reply(merged)

        return await asyncio.to_thread(call)


PYTHON_DRIVERS: tuple[type[Driver], ...] = (
    OpenAISyncDriver,
    OpenAIAsyncDriver,
    LiteLLMDriver,
    LangChainDriver,
)
