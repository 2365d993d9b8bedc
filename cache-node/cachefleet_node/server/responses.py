"""`POST /v1/responses`: the OpenAI Responses API, cached by the rules of
`core.responses` (stateless requests only), through the chat proxy's flow: the same
partitions, guards, thresholds, key checks, single flight and fail-open behaviour. A bypassed
request goes to the upstream untouched and is counted like a chat bypass: in its namespace's
stats and `cachefleet_requests_total`, and by reason in `cachefleet_bypass_total`."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from cachefleet_node.core.planning import Outcome, plan_for_namespace, resolve_namespace
from cachefleet_node.core.request import ChatRequest, decode_json_object
from cachefleet_node.core.responses import (
    ResponseCreateBody,
    ResponsesRequest,
    ResponsesStreamRecorder,
    parse_responses_request,
    replay_events,
    served_response,
)
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.common import openapi_body, runtime_of
from cachefleet_node.server.http import read_body
from cachefleet_node.server.passthrough import forward_untouched
from cachefleet_node.server.proxy import CachedApi, Served, answer_cached

__all__ = ["RESPONSES", "router"]

log = structlog.get_logger("cachefleet_node.request")
router = APIRouter()

_OPENAPI_BODY = openapi_body(ResponseCreateBody)


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
    if parsed.bypass == "no-model":  # no namespace to route it to, or count it in
        response = await forward_untouched(
            runtime, http_request, "responses", raw, caller, parsed.bypass
        )
        _count_bypass(runtime, None, caller.tenant, parsed, response.status_code, started)
        return response
    ns = resolve_namespace(router_, parsed.chat.model)
    if parsed.bypass is not None:
        namespace = router_.active(ns.name)
        response = await forward_untouched(
            runtime,
            http_request,
            "responses",
            raw,
            caller,
            parsed.bypass,
            {"x-cachefleet-namespace": namespace},
        )
        _count_bypass(runtime, namespace, caller.tenant, parsed, response.status_code, started)
        return response
    plan = plan_for_namespace(
        router_, ns, http_request.headers, parsed.chat, caller.tenant, api="responses"
    )
    return await answer_cached(http_request, raw, parsed.chat, plan, caller, started, RESPONSES)


def _count_bypass(
    runtime: NodeRuntime,
    namespace: str | None,
    tenant: str,
    request: ResponsesRequest,
    status: int,
    started: float,
) -> None:
    """Count a bypassed request (in its cache namespace's stats and metrics, when it has
    one) and write its log line, as a chat bypass is."""
    assert request.bypass is not None
    outcome = Outcome("bypass", reasons=[request.bypass])
    if namespace is None:
        runtime.metrics.bypasses.labels(request.bypass).inc()
    else:
        runtime.engine.record(namespace, request.chat.model, outcome)
    latency = time.perf_counter() - started
    runtime.metrics.request_latency.labels(outcome.result).observe(latency)
    log.info(
        "request",
        route="responses",
        namespace=namespace,
        tenant=tenant,
        model=request.chat.model or None,
        result=outcome.result,
        reasons=outcome.reasons,
        latency_ms=round(latency * 1000, 3),
        status=status,
        stream=request.chat.stream,
    )
