"""Cache API for applications that skip the proxy, and for the operator.

`/v1/cache/lookup`, `/v1/cache/store`, `/v1/cache/invalidate`, `/v1/cache/stats`,
`/v1/cache/namespaces` (list, switch).
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cachefleet_node.auth import Caller
from cachefleet_node.config import Identifier
from cachefleet_node.core.errors import RequestError
from cachefleet_node.core.request import (
    ChatRequestModel,
    decode_json_object,
    validation_error_to_request_error,
)
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.http import json_response, read_body
from cachefleet_node.server.planning import plan_request, response_headers_for
from cachefleet_node.stats import NamespaceStats

__all__ = ["router"]

router = APIRouter(prefix="/v1/cache", tags=["cache"])
M = TypeVar("M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StoreRequest(_Body):
    """Store an answer for a chat request (as the proxy would after a miss)."""

    request: dict[str, Any] = Field(description="The chat-completion request body.")
    response: dict[str, Any] = Field(description="The chat.completion object to cache.")


class InvalidateRequest(_Body):
    """Remove entries. Without `namespace`, every active namespace of this node is in scope."""

    namespace: Identifier | None = Field(None, description="Cache namespace (as in responses).")
    tenant: Identifier | None = Field(None, description="Only this tenant's entries.")
    tags: list[Identifier] = Field(default_factory=list, max_length=16)
    older_than_s: float | None = Field(None, ge=0, description="Only entries at least this old.")
    dry_run: bool = Field(False, description="Count, do not delete.")


class SwitchRequest(_Body):
    """Point a configured namespace at another cache namespace, on every node."""

    name: Identifier = Field(description="Configured namespace name.")
    namespace: Identifier = Field(description="Cache namespace to activate.")


def _runtime(request: Request) -> NodeRuntime:
    runtime: NodeRuntime = request.app.state.runtime
    return runtime


def _openapi(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


async def _body(request: Request, runtime: NodeRuntime, model: type[M]) -> M:
    data = decode_json_object(await read_body(request, runtime.config.server.max_request_bytes))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error_to_request_error(exc) from exc


async def _caller(request: Request, runtime: NodeRuntime) -> Caller:
    return runtime.tenants.resolve(request.headers.get("authorization"))


@router.post("/lookup", openapi_extra=_openapi(ChatRequestModel))
async def lookup(http_request: Request) -> Response:
    """Look up a chat request (same body and headers as the proxy) without calling upstream."""
    runtime = _runtime(http_request)
    caller = await _caller(http_request, runtime)
    body = decode_json_object(
        await read_body(http_request, runtime.config.server.max_request_bytes)
    )
    _, plan = plan_request(runtime.engine.router, http_request.headers, body, caller.tenant)
    outcome = await runtime.engine.lookup(plan)
    runtime.engine.record(plan.namespace, plan.model, outcome)
    age = None if outcome.entry is None else time.time() - outcome.entry.created_at
    headers = response_headers_for(
        plan,
        outcome.result,
        tier=outcome.tier,
        similarity=outcome.similarity,
        age_s=age,
        reasons=outcome.reasons,
    )
    return json_response(
        {
            "hit": outcome.hit,
            "result": outcome.result,
            "tier": outcome.tier,
            "similarity": outcome.similarity,
            "namespace": plan.namespace,
            "age_s": None if age is None else round(age, 3),
            "reasons": outcome.reasons,
            "response": None if outcome.answer is None else orjson.loads(outcome.answer),
        },
        headers=headers,
    )


@router.post("/store", openapi_extra=_openapi(StoreRequest), status_code=201)
async def store(http_request: Request) -> Response:
    """Store an answer; honours `cache-control: no-store`, tags and TTL headers."""
    runtime = _runtime(http_request)
    caller = await _caller(http_request, runtime)
    payload = await _body(http_request, runtime, StoreRequest)
    _, plan = plan_request(
        runtime.engine.router, http_request.headers, payload.request, caller.tenant
    )
    outcome = await runtime.engine.remember(plan, payload.response, None)
    if outcome in {
        "skipped-malformed",
        "skipped-no-choices",
        "skipped-unfinished",
        "skipped-too-large",
    }:
        raise RequestError(
            400,
            f"response is not a storable chat.completion ({outcome.removeprefix('skipped-')})",
            param="response",
            code="invalid_value",
        )
    stored = outcome.startswith("stored")
    return json_response(
        {
            "stored": stored,
            "outcome": outcome,
            "namespace": plan.namespace,
            "entry_id": plan.keys.exact if stored else None,
        },
        status_code=201 if stored else 200,
    )


@router.post("/invalidate", openapi_extra=_openapi(InvalidateRequest))
async def invalidate(http_request: Request) -> Response:
    """Remove entries by namespace, tenant, tag and age, on every tier and every node."""
    runtime = _runtime(http_request)
    caller = await _caller(http_request, runtime)
    payload = await _body(http_request, runtime, InvalidateRequest)
    tenant = payload.tenant
    if not caller.admin:
        if tenant is not None and tenant != caller.tenant:
            raise RequestError(
                403,
                "a tenant key may only invalidate its own tenant",
                param="tenant",
                code="forbidden",
                error_type="permission_error",
            )
        tenant = caller.tenant
    namespaces = (
        [payload.namespace]
        if payload.namespace is not None
        else sorted(set(runtime.engine.router.all_active().values()))
    )
    created_before = None if payload.older_than_s is None else time.time() - payload.older_than_s
    results = {}
    for namespace in namespaces:
        scope = InvalidationScope(
            namespace=namespace,
            tenant=tenant,
            tags=tuple(payload.tags),
            created_before=created_before,
        )
        try:
            results[namespace] = await runtime.engine.invalidate(scope, dry_run=payload.dry_run)
        except Exception as exc:
            raise RequestError(
                503,
                f"invalidation of '{namespace}' failed: a shared tier is unreachable "
                f"({type(exc).__name__}); nothing was reported as removed, retry",
                code="tier_unavailable",
                error_type="server_error",
            ) from exc
        if not payload.dry_run:
            await runtime.broadcast({"type": "invalidate", "scope": scope.to_dict()})
    return json_response({"dry_run": payload.dry_run, "tenant": tenant, "removed": results})


@router.get("/namespaces")
async def namespaces(http_request: Request) -> Response:
    """Configured namespaces and the cache namespace each one currently uses."""
    runtime = _runtime(http_request)
    return json_response({"active": runtime.engine.router.all_active()})


@router.post("/namespaces/switch", openapi_extra=_openapi(SwitchRequest))
async def switch_namespace(http_request: Request) -> Response:
    """Activate another cache namespace for a configured one, on every node (admin only)."""
    runtime = _runtime(http_request)
    caller = await _caller(http_request, runtime)
    if not caller.admin:
        raise RequestError(
            403,
            "switching namespaces needs an admin key",
            code="forbidden",
            error_type="permission_error",
        )
    payload = await _body(http_request, runtime, SwitchRequest)
    if runtime.engine.router.get(payload.name) is None:
        raise RequestError(
            404, f"no configured namespace '{payload.name}'", param="name", code="not_found"
        )
    await runtime.engine.persist_switch(payload.name, payload.namespace)
    await runtime.broadcast(
        {"type": "switch", "name": payload.name, "namespace": payload.namespace}
    )
    return json_response({"active": runtime.engine.router.all_active()})


@router.get("/stats")
async def stats(http_request: Request) -> Response:
    """Per-namespace requests, hits by tier, entries, tokens and dollars saved."""
    runtime = _runtime(http_request)
    engine = runtime.engine
    names = set(engine.router.all_active().values()) | set(engine.stats.totals)
    report: dict[str, Any] = {}
    for namespace in sorted(names):
        item: dict[str, Any] = {"node": engine.stats.totals[namespace].report()}
        if runtime.redis is not None:
            try:
                fleet = await NamespaceStats.fleet(
                    runtime.redis, runtime.config.redis.key_prefix, namespace
                )
                item["fleet"] = fleet.report()
            except Exception:
                item["fleet"] = None
        try:
            item["entries"] = await engine.store.count(namespace)
        except Exception:
            item["entries"] = None
        report[namespace] = item
    return json_response(
        {
            "node_id": runtime.node_id,
            "uptime_s": round(time.time() - runtime.started_at, 1),
            "active": engine.router.all_active(),
            "namespaces": report,
            "l1": {
                "exact_entries": len(engine.l1_exact),
                "exact_bytes": engine.l1_exact.bytes_used,
                "semantic_entries": len(engine.l1_semantic),
            },
            "tiers": {
                "store": engine.store.name,
                "milvus_connected": engine.vectors is not None and engine.vectors.connected,
                "redis": runtime.redis is not None,
            },
        }
    )
