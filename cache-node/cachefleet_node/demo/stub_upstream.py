"""A local OpenAI-compatible upstream for the demo and the tests (a stand-in for a paid LLM).

It answers deterministically from the prompt, reports token usage, streams when asked, and
can be told to be slow, to fail, or to break a stream half-way:

- `GET  /v1/models`       -> a one-model list (401 like OpenAI's when keys are enforced)
- `POST /v1/embeddings`   -> deterministic unit vectors per (model, input item), like the API:
  a string, token array or list of either; `encoding_format` float (float32 values as JSON
  numbers) or base64 (little-endian float32); `dimensions` (the vector's head, renormalised;
  text-embedding-3 models only); usage counted per item; OpenAI's 400/404 errors
- `GET  /_stub/stats`     -> {"calls": N, "streamed": M, "model_calls": K, "embedding_calls": E}
- `GET  /_stub/last`      -> the last request body and its Authorization header
- `GET  /_stub/embeddings` -> the bodies of the embeddings calls received, in order
- `POST /_stub/behaviour` -> {"latency_ms", "fail_status", "fail_next", "break_stream_after",
  "temperature_noise", "valid_keys", "models_status", "trickle_ms", "malformed", "hang"};
  fields left out keep their value; `malformed` sends answers the API never would (a streamed
  chunk with `"choices": {}` and one with `"index": null`; a plain answer with `"choices": {}`),
  `hang` accepts chat calls and never answers;
  `valid_keys` (a list of bearer keys) makes every other key, or none, get OpenAI's 401
- `POST /_stub/reset`     -> calls = 0, default behaviour
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

__all__ = ["StubBehaviour", "create_stub_app", "main"]

_WORDS = (
    "the cache answers this from the upstream model with a short and plausible reply about "
    "your question including a few details and one practical next step to try"
).split(" ")


@dataclass
class StubBehaviour:
    """How the stub behaves for the next calls."""

    latency_ms: float = 0.0  # time before the first byte
    token_delay_ms: float = 0.0  # extra time per streamed chunk
    fail_status: int = 500  # status used for injected failures
    fail_next: int = 0  # fail this many upcoming calls
    break_stream_after: int = 0  # cut streams after N chunks (0: never)
    temperature_noise: bool = True  # temperature > 0 varies the answer per call
    valid_keys: list[str] | None = None  # accepted bearer keys (None: any or none)
    models_status: int = 200  # status of GET /models for an accepted key (404: no such route)
    trickle_ms: float = 0.0  # send a non-streamed answer in 16-byte pieces this far apart
    malformed: bool = False  # answers with a broken `choices` (streamed and plain)
    hang: bool = False  # chat calls never answer


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else orjson.dumps(content).decode()
    return ""


def _answer(body: dict[str, Any], nonce: int) -> str:
    text = _last_user_text(body)
    seed = hashlib.sha256(orjson.dumps(body.get("messages")) + str(nonce).encode()).digest()
    length = 12 + seed[0] % 24
    words = [_WORDS[(seed[i % len(seed)] + i) % len(_WORDS)] for i in range(length)]
    return f"Answer to '{text[:80]}': " + " ".join(words) + "."


#: Embedding models the stub serves and their native dimensions (OpenAI's).
EMBEDDING_MODELS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
MAX_EMBEDDING_INPUTS = 2048


def _openai_error(status: int, message: str, code: str | None = None) -> Response:
    error = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": code,
        }
    }
    return Response(orjson.dumps(error), status_code=status, media_type="application/json")


def _embedding_items(value: Any) -> list[str | list[int]] | None:
    """The input items as the API reads them, or None for an invalid input."""

    def tokens(item: Any) -> bool:
        return (
            isinstance(item, list)
            and bool(item)
            and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in item)
        )

    if isinstance(value, str):
        return [value] if value else None
    if tokens(value):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) and item for item in value):
            return list(value)
        if all(tokens(item) for item in value):
            return list(value)
    return None


def stub_embedding(model: str, item: str | list[int], dimensions: int | None) -> np.ndarray:
    """The stub's vector of one item: deterministic per (model, item), unit length; with
    `dimensions`, the head of the native vector renormalised (as text-embedding-3 does)."""
    seed = hashlib.sha256(orjson.dumps([model, item])).digest()
    rng = np.random.default_rng(int.from_bytes(seed[:8], "little"))
    vector = rng.standard_normal(EMBEDDING_MODELS[model])
    if dimensions is not None:
        vector = vector[:dimensions]
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _item_tokens(item: str | list[int]) -> int:
    return len(item) if isinstance(item, list) else max(1, len(item.split()) + len(item) // 16)


def create_stub_app(initial: StubBehaviour | None = None) -> FastAPI:
    """The stub as an ASGI app."""
    app = FastAPI(title="stub upstream")
    start = initial or StubBehaviour()
    state: dict[str, Any] = {"behaviour": StubBehaviour(**asdict(start)), "calls": 0, "streamed": 0}
    counter = itertools.count()

    @app.post("/_stub/behaviour")
    async def behaviour(request: Request) -> Response:
        updates = orjson.loads(await request.body())
        current = asdict(state["behaviour"])
        current.update({k: v for k, v in updates.items() if k in current})
        state["behaviour"] = StubBehaviour(**current)
        return Response(orjson.dumps(asdict(state["behaviour"])), media_type="application/json")

    @app.post("/_stub/reset")
    async def reset() -> Response:
        state.update(
            behaviour=StubBehaviour(**asdict(start)),
            calls=0,
            streamed=0,
            model_calls=0,
            embedding_requests=[],
        )
        return Response(b"{}", media_type="application/json")

    @app.get("/_stub/stats")
    async def stats() -> Response:
        counts = {
            "calls": state["calls"],
            "streamed": state["streamed"],
            "model_calls": state.get("model_calls", 0),
            "embedding_calls": len(state.get("embedding_requests", [])),
        }
        return Response(orjson.dumps(counts), media_type="application/json")

    @app.get("/_stub/embeddings")
    async def embedding_requests() -> Response:
        return Response(
            orjson.dumps(state.get("embedding_requests", [])), media_type="application/json"
        )

    @app.get("/_stub/last")
    async def last() -> Response:
        return Response(orjson.dumps(state.get("last", {})), media_type="application/json")

    def refused(request: Request) -> Response | None:
        """OpenAI's 401 when keys are enforced and the request's is missing or unknown."""
        keys = state["behaviour"].valid_keys
        authorization = request.headers.get("authorization") or ""
        if keys is None or (
            authorization.startswith("Bearer ") and authorization[7:].strip() in keys
        ):
            return None
        message = (
            "You didn't provide an API key." if not authorization else "Incorrect API key provided."
        )
        error = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "code": "invalid_api_key",
                "param": None,
            }
        }
        return Response(orjson.dumps(error), status_code=401, media_type="application/json")

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        state["model_calls"] = state.get("model_calls", 0) + 1
        refusal = refused(request)
        if refusal is not None:
            return refusal
        status = state["behaviour"].models_status
        if status != 200:
            error = {"error": {"message": "not available", "type": "server_error", "code": None}}
            return Response(orjson.dumps(error), status_code=status, media_type="application/json")
        listing = {
            "object": "list",
            "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "stub"}],
        }
        return Response(orjson.dumps(listing), media_type="application/json")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = orjson.loads(await request.body())
        state.setdefault("embedding_requests", []).append(body)
        behaviour: StubBehaviour = state["behaviour"]
        refusal = refused(request)
        if refusal is not None:
            return refusal
        if behaviour.latency_ms:
            await asyncio.sleep(behaviour.latency_ms / 1000)
        if behaviour.fail_next > 0:
            behaviour.fail_next -= 1
            error = {"error": {"message": "injected failure", "type": "server_error", "code": None}}
            return Response(
                orjson.dumps(error),
                status_code=behaviour.fail_status,
                media_type="application/json",
            )
        model = body.get("model")
        if not isinstance(model, str) or model not in EMBEDDING_MODELS:
            return _openai_error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "model_not_found",
            )
        items = _embedding_items(body.get("input"))
        if items is None:
            return _openai_error(400, "'$.input' is invalid. Please check the API reference.")
        if len(items) > MAX_EMBEDDING_INPUTS:
            return _openai_error(400, f"'$.input' must have at most {MAX_EMBEDDING_INPUTS} items.")
        encoding = body.get("encoding_format")
        if encoding not in (None, "float", "base64"):
            return _openai_error(
                400, f"'{encoding}' is not one of ['float', 'base64'] - 'encoding_format'"
            )
        dimensions = body.get("dimensions")
        if dimensions is not None:
            if model == "text-embedding-ada-002":
                return _openai_error(400, "This model does not support specifying dimensions.")
            if (
                not isinstance(dimensions, int)
                or isinstance(dimensions, bool)
                or not 1 <= dimensions <= EMBEDDING_MODELS[model]
            ):
                return _openai_error(400, f"Invalid value for 'dimensions' = {dimensions}.")
        data = []
        for index, item in enumerate(items):
            vector = stub_embedding(model, item, dimensions)
            value: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if encoding == "base64"
                else vector.astype(np.float64)
            )
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(_item_tokens(item) for item in items)
        answer = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Response(
            orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY),
            media_type="application/json",
            headers={"x-request-id": f"req_stub{len(state['embedding_requests'])}"},
        )

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Response:
        body = orjson.loads(await request.body())
        state["last"] = {"body": body, "authorization": request.headers.get("authorization")}
        behaviour: StubBehaviour = state["behaviour"]
        state["calls"] += 1
        refusal = refused(request)
        if refusal is not None:
            return refusal
        if behaviour.hang:
            await asyncio.Event().wait()
        if behaviour.latency_ms:
            await asyncio.sleep(behaviour.latency_ms / 1000)
        if behaviour.fail_next > 0:
            behaviour.fail_next -= 1
            error = {"error": {"message": "injected failure", "type": "server_error", "code": None}}
            return Response(
                orjson.dumps(error),
                status_code=behaviour.fail_status,
                media_type="application/json",
            )
        temperature = body.get("temperature")
        noisy = (
            behaviour.temperature_noise and isinstance(temperature, int | float) and temperature > 0
        )
        answer = _answer(body, next(counter) if noisy else 0)
        prompt_tokens = (
            sum(len(str(m.get("content", "")).split()) for m in body.get("messages", [])) + 8
        )
        completion_tokens = len(answer.split()) + 4
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        ident = f"chatcmpl-stub{state['calls']}"
        created = int(time.time())
        model = body.get("model", "stub")
        if not body.get("stream"):
            completion = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
            if behaviour.malformed:
                completion["choices"] = {}
            if behaviour.trickle_ms:
                data = orjson.dumps(completion)

                async def trickle() -> AsyncIterator[bytes]:
                    for start in range(0, len(data), 16):
                        yield data[start : start + 16]
                        await asyncio.sleep(behaviour.trickle_ms / 1000)

                return StreamingResponse(trickle(), media_type="application/json")
            return Response(orjson.dumps(completion), media_type="application/json")

        state["streamed"] += 1
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events() -> AsyncIterator[bytes]:
            head = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
            pieces = [{"role": "assistant", "content": ""}] + [
                {"content": word + " "} for word in answer.split(" ")
            ]
            for index, delta in enumerate(pieces):
                if behaviour.break_stream_after and index >= behaviour.break_stream_after:
                    raise RuntimeError("stub: stream cut on purpose")
                chunk = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                if behaviour.malformed and index == 0:
                    broken = {"index": None, "delta": {"content": "?"}, "finish_reason": None}
                    yield b"data: " + orjson.dumps({**head, "choices": {}}) + b"\n\n"
                    yield b"data: " + orjson.dumps({**head, "choices": [broken]}) + b"\n\n"
                if behaviour.token_delay_ms:
                    await asyncio.sleep(behaviour.token_delay_ms / 1000)
            final = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield b"data: " + orjson.dumps(final) + b"\n\n"
            if include_usage:
                yield b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main(argv: list[str] | None = None) -> None:
    """Run the stub: `python -m cachefleet_node.demo.stub_upstream --port N`."""
    parser = argparse.ArgumentParser(description="Stub OpenAI-compatible upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before answering")
    parser.add_argument(
        "--token-delay-ms", type=float, default=0.0, help="delay per streamed chunk"
    )
    args = parser.parse_args(argv)
    app = create_stub_app(
        StubBehaviour(latency_ms=args.latency_ms, token_delay_ms=args.token_delay_ms)
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
