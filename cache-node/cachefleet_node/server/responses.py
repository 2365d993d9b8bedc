"""`POST /v1/responses`: the OpenAI Responses API, cached by the rules of
`core.responses` (stateless requests only), through the chat proxy's flow: the same
partitions, guards, thresholds, key checks, single flight and fail-open behaviour."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from cachefleet_node.core.planning import plan_for_namespace, resolve_namespace
from cachefleet_node.core.request import ChatRequest, decode_json_object
from cachefleet_node.core.responses import (
    ResponsesRequestModel,
    ResponsesStreamRecorder,
    parse_responses_request,
    replay_events,
    served_response,
)
from cachefleet_node.server.common import openapi_body, runtime_of
from cachefleet_node.server.http import read_body
from cachefleet_node.server.passthrough import forward_untouched
from cachefleet_node.server.proxy import CachedApi, Served, answer_cached

__all__ = ["RESPONSES", "router"]

router = APIRouter()

_OPENAPI_BODY = openapi_body(ResponsesRequestModel)


def _serve(request: ChatRequest, stored: dict[str, Any]) -> Served:
    """A stored response served to `request` (fresh ids, cached input tokens): as JSON, or
    replayed as the typed event stream; headers name the response it reuses."""
    served = served_response(stored, int(time.time()))
    headers = {
        "x-request-id": f"req_{uuid.uuid4().hex}",
        "x-cachefleet-original-id": str(stored.get("id", "")),
        "x-cachefleet-original-created": str(stored.get("created_at", "")),
    }
    if request.stream:
        return list(replay_events(served)), headers
    return orjson.dumps(served), headers


#: The Responses API (`POST /v1/responses`).
RESPONSES = CachedApi(
    path="/responses", serve=_serve, recorder=ResponsesStreamRecorder, asks_usage=False
)


@router.post("/v1/responses", openapi_extra=_OPENAPI_BODY, tags=["proxy"])
async def responses(http_request: Request) -> Response:
    """OpenAI Responses API: stateless requests answered from cache when possible, the
    others (stored, chained, background, server tools ...) passed to the upstream as sent."""
    started = time.perf_counter()
    runtime = runtime_of(http_request)
    server = runtime.config.server
    raw = await read_body(http_request, server.max_request_bytes, server.body_timeout_s)
    caller = runtime.tenants.resolve(http_request.headers.get("authorization"))
    parsed = parse_responses_request(decode_json_object(raw))
    router_ = runtime.engine.router
    ns = resolve_namespace(router_, parsed.chat.model)
    if parsed.bypass is not None:
        namespace = {"x-cachefleet-namespace": router_.active(ns.name)}
        return await forward_untouched(
            runtime, http_request, "responses", raw, caller, parsed.bypass, namespace
        )
    plan = plan_for_namespace(
        router_, ns, http_request.headers, parsed.chat, caller.tenant, api="responses"
    )
    return await answer_cached(http_request, raw, parsed.chat, plan, caller, started, RESPONSES)
