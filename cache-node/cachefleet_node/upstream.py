"""Client of the upstream OpenAI-compatible API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import structlog

from cachefleet_node.config import UpstreamConfig

__all__ = ["FORWARDED_REQUEST_HEADERS", "UPSTREAM_IDLE_S", "Upstream", "response_headers"]

log = structlog.get_logger(__name__)

# Request headers passed on to the upstream (Authorization is handled separately).
FORWARDED_REQUEST_HEADERS = (
    "openai-organization",
    "openai-project",
    "openai-beta",
    "x-request-id",
    "user-agent",
)
_DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "date",
        "server",
        "set-cookie",
    }
)


def response_headers(headers: httpx.Headers) -> dict[str, str]:
    """Upstream response headers worth passing to the client (no hop-by-hop, no cookies)."""
    return {k: v for k, v in headers.items() if k.lower() not in _DROPPED_RESPONSE_HEADERS}


#: Seconds an idle upstream connection is kept for reuse.
UPSTREAM_IDLE_S = 4.0


class _Progress:
    """What one upstream call got to (httpcore trace events): whether it opened a new
    connection, whether the answer's status line and headers arrived."""

    def __init__(self) -> None:
        self.connected = False
        self.answered = False

    async def trace(self, event: str, _info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.connected = True
        elif event == "http11.receive_response_headers.complete":
            self.answered = True


class Upstream:
    """Pooled HTTP client for `POST {base_url}/chat/completions`, `/embeddings` (and `GET
    /models` to check a credential, `forward` for every other route)."""

    def __init__(self, config: UpstreamConfig, api_key: str | None) -> None:
        self._api_key = api_key
        # False once the upstream refused `stream_options` (an older OpenAI-compatible server)
        self.accepts_stream_options = True
        self.base_url = config.base_url
        self.timeout_s = config.timeout_s
        self._client = httpx.AsyncClient(
            base_url=config.base_url,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            # Idle connections are dropped before the 5 s idle timeout of uvicorn-based
            # upstreams (vLLM, the stub): a reused connection the server is closing at that
            # moment would fail the request.
            limits=httpx.Limits(
                max_connections=512,
                max_keepalive_connections=128,
                keepalive_expiry=UPSTREAM_IDLE_S,
            ),
        )

    @property
    def has_api_key(self) -> bool:
        """Whether the node has its own upstream credential (`upstream.api_key_env`)."""
        return bool(self._api_key)

    def headers(self, incoming: Mapping[str, str], use_caller_auth: bool) -> dict[str, str]:
        """Headers for the upstream call: content type, selected pass-through, credentials."""
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        for name in FORWARDED_REQUEST_HEADERS:
            value = incoming.get(name)
            if value is not None:
                headers[name] = value
        if use_caller_auth:
            caller = incoming.get("authorization")
            if caller:
                headers["authorization"] = caller
        elif self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    async def check_credential(self, authorization: str | None, timeout_s: float) -> httpx.Response:
        """`GET {base_url}/models` with the caller's credential: the cheapest authenticated call
        of an OpenAI-compatible API (read, closed)."""
        headers = {"accept-encoding": "identity"}
        if authorization:
            headers["authorization"] = authorization
        return await self._client.get("/models", headers=headers, timeout=timeout_s)

    async def forward(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: AsyncIterator[bytes] | bytes | None,
    ) -> httpx.Response:
        """Send any request to `{base_url}/{path}?{query}` (the body streamed, or bytes read
        already); the caller reads and closes the streamed response."""
        request = self._client.build_request(
            method, f"/{path}", params=httpx.QueryParams(query), headers=headers, content=body
        )
        return await self._client.send(request, stream=True)

    def deadline(self) -> float:
        """When an upstream call started now must be over (event-loop time): `timeout_s`."""
        return asyncio.get_running_loop().time() + self.timeout_s

    async def send(
        self, body: bytes, headers: dict[str, str], stream: bool, deadline: float | None = None
    ) -> httpx.Response:
        """POST the body to `/chat/completions` before `deadline` (default: `timeout_s` from
        now): the whole answer, or with `stream` its headers (read the body with `relay`, then
        close it). `httpx.TimeoutException` past the deadline."""
        return await self.post("/chat/completions", body, headers, stream=stream, deadline=deadline)

    async def post(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *,
        stream: bool = False,
        deadline: float | None = None,
    ) -> httpx.Response:
        """POST a JSON body to `{base_url}{path}` under the same total deadline as `send`: the
        whole answer (read, closed), or with `stream` its headers.

        A call that breaks on a reused pooled connection before any byte of the answer is sent
        once more, on a new connection: the upstream closed that idle connection as the node
        reused it (its idle timeout fired while a loaded event loop delayed the request), or
        the pool closed it under the request (encode/httpcore#1110). A call that breaks on a
        new connection, or after the answer began, is not repeated."""
        loop = asyncio.get_running_loop()
        end = deadline or self.deadline()
        retried = False
        while True:
            seen = _Progress()
            request = self._client.build_request(
                "POST", path, content=body, headers=headers, extensions={"trace": seen.trace}
            )
            try:
                return await asyncio.wait_for(
                    self._client.send(request, stream=stream), end - loop.time()
                )
            except TimeoutError as exc:
                raise httpx.ReadTimeout(
                    f"no complete upstream answer within {self.timeout_s:g}s", request=request
                ) from exc
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if retried or seen.connected or seen.answered:
                    raise
                retried = True
                log.info("upstream_reused_connection_broke", error=type(exc).__name__)

    async def relay(self, response: httpx.Response, deadline: float) -> AsyncIterator[bytes]:
        """The raw body of a streamed `response`, cut with `httpx.TimeoutException` at
        `deadline` (however steadily the upstream trickles)."""
        loop = asyncio.get_running_loop()
        chunks = response.aiter_raw().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(anext(chunks), deadline - loop.time())
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise httpx.ReadTimeout(
                    f"the upstream answer did not end within {self.timeout_s:g}s",
                    request=response.request,
                ) from exc
            yield chunk

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()
