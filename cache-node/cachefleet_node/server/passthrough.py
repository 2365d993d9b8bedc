"""Every other OpenAI route passes through to the upstream, untouched.

`/v1/models`, stored responses (`GET /v1/responses/{id}`), files, batches, audio, images …:
the request (method, path, query, body streamed as it arrives) goes to `{upstream}/{path}` with the
credential the proxy would use (the caller's without tenant keys, the node's with them, after
the caller's key was checked), and the upstream's status, headers and body stream back as they
come, marked `x-cachefleet-cache: bypass` (reason `not-cached-route`). Nothing is stored.
The node's own API under `/v1/cache/` never goes upstream, and a cached route called with a
method it does not serve gets an OpenAI-style 405 naming the one it does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from cachefleet_node.auth import Caller
from cachefleet_node.core.errors import RequestError
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.common import runtime_of
from cachefleet_node.upstream import response_headers

__all__ = ["CACHED_ROUTES", "forward_untouched", "router"]

router = APIRouter()

#: Routes the node answers itself, and the method each serves.
CACHED_ROUTES = {"chat/completions": "POST", "embeddings": "POST", "responses": "POST"}
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@router.api_route("/v1/{path:path}", methods=_METHODS, include_in_schema=False)
async def passthrough(path: str, request: Request) -> Response:
    """Forward any other `/v1/...` request to the upstream and stream its answer back."""
    if path == "cache" or path.startswith("cache/"):
        raise RequestError(404, f"no route /v1/{path}", code="not_found")
    served = CACHED_ROUTES.get(path.rstrip("/"))
    if served is not None:
        raise RequestError(
            405,
            f"/v1/{path} serves {served} only, not {request.method}",
            code="method_not_allowed",
        )
    runtime = runtime_of(request)
    caller = runtime.tenants.resolve(request.headers.get("authorization"))
    body = request.stream() if request.method in ("POST", "PUT", "PATCH") else None
    return await forward_untouched(runtime, request, path, body, caller, "not-cached-route")


async def forward_untouched(
    runtime: NodeRuntime,
    request: Request,
    path: str,
    body: AsyncIterator[bytes] | bytes | None,
    caller: Caller,
    reason: str,
    extra_headers: Mapping[str, str] | None = None,
) -> Response:
    """Send the request to `{upstream}/{path}` as it came (method, query, body: streamed, or
    the bytes a route read already) and stream the upstream's answer back, marked
    `x-cachefleet-cache: bypass` with `reason`."""
    headers = runtime.upstream.headers(request.headers, caller.forward_auth)
    content_type = request.headers.get("content-type")
    if content_type:
        headers["content-type"] = content_type
    else:
        headers.pop("content-type", None)
    try:
        upstream = await runtime.upstream.forward(
            request.method, path, request.url.query, headers, body
        )
    except httpx.HTTPError as exc:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
        raise RequestError(
            504 if isinstance(exc, httpx.TimeoutException) else 502,
            f"upstream {kind}",
            code="upstream_unavailable",
            error_type="upstream_error",
        ) from exc
    runtime.metrics.upstream_responses.labels(f"{upstream.status_code // 100}xx").inc()
    out = response_headers(upstream.headers)
    out.update(extra_headers or {})
    out["x-cachefleet-cache"] = "bypass"
    out["x-cachefleet-bypass-reason"] = reason
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=out,
        background=BackgroundTask(upstream.aclose),
    )
