"""Cache API for applications that skip the proxy, and for the operator.

`/v1/cache/lookup`, `/v1/cache/store`, `/v1/cache/invalidate`, `/v1/cache/stats`,
`/v1/cache/namespaces` (list, switch). The model-version lifecycle routes (warm, reembed,
embedding) are in `lifecycle_api.py`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from cachefleet_contract.admin import (
    ActiveNamespaces,
    Counters,
    InvalidatedCounts,
    InvalidateRequest,
    InvalidateResult,
    L1Usage,
    NamespaceCounts,
    NamespacesReport,
    StatsReport,
    SwitchRequest,
    TierFlags,
)
from cachefleet_node.core.errors import RequestError
from cachefleet_node.core.planning import Outcome, plan_request, response_headers_for
from cachefleet_node.core.request import ChatCompletionBody, decode_json_object
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.key_check import Rejection
from cachefleet_node.lifecycle import invalidate_similar
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.common import (
    StrictBody,
    caller_of,
    may_read_hits,
    openapi_body,
    parse_body,
    require_admin,
    runtime_of,
    unavailable,
)
from cachefleet_node.server.http import json_response, model_response, read_body
from cachefleet_node.stats import NamespaceStats

__all__ = ["router"]

router = APIRouter(prefix="/v1/cache", tags=["cache"])


class StoreRequest(StrictBody):
    """Store an answer for a chat request (as the proxy would after a miss)."""

    request: dict[str, Any] = Field(description="The chat-completion request body.")
    response: dict[str, Any] = Field(description="The chat.completion object to cache.")


@router.post("/lookup", openapi_extra=openapi_body(ChatCompletionBody))
async def lookup(http_request: Request) -> Response:
    """Look up a chat request (same body and headers as the proxy) without calling upstream."""
    runtime = runtime_of(http_request)
    caller = await caller_of(http_request, runtime)
    body = decode_json_object(
        await read_body(
            http_request,
            runtime.config.server.max_request_bytes,
            runtime.config.server.body_timeout_s,
        )
    )
    _, plan = plan_request(runtime.engine.router, http_request.headers, body, caller.tenant)
    outcome = await runtime.engine.lookup(plan)
    if outcome.hit:
        allowed = await may_read_hits(runtime, caller, http_request.headers.get("authorization"))
        if isinstance(allowed, Rejection):
            return Response(
                allowed.body, status_code=allowed.status, media_type=allowed.content_type
            )
        if not allowed:  # undecided, and this route never calls upstream: no answer
            outcome = Outcome("miss", reasons=["key-unverified"], vetoes=outcome.vetoes)
    runtime.engine.record(plan.namespace, plan.model, outcome)
    age = None if outcome.entry is None else time.time() - outcome.entry.created_at
    headers = response_headers_for(
        plan,
        outcome.result,
        tier=outcome.tier,
        similarity=outcome.similarity,
        age_s=age,
        reasons=outcome.reasons,
        judgement=outcome.judgement,
        vetoes=outcome.vetoes,
    )
    return json_response(
        {
            "hit": outcome.hit,
            "result": outcome.result,
            "tier": outcome.tier,
            "similarity": outcome.similarity,
            "verifier": None if outcome.judgement is None else outcome.judgement.verifier,
            "vetoes": outcome.vetoes,
            "namespace": plan.namespace,
            "age_s": None if age is None else round(age, 3),
            "reasons": outcome.reasons,
            "response": None if outcome.answer is None else orjson.loads(outcome.answer),
        },
        headers=headers,
    )


@router.post("/store", openapi_extra=openapi_body(StoreRequest), status_code=201)
async def store(http_request: Request) -> Response:
    """Store an answer; honours `cache-control: no-store`, tags and TTL headers."""
    runtime = runtime_of(http_request)
    caller = await caller_of(http_request, runtime)
    payload = await parse_body(http_request, runtime, StoreRequest)
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


@router.post("/invalidate", openapi_extra=openapi_body(InvalidateRequest))
async def invalidate(http_request: Request) -> Response:
    """Remove entries by namespace, tenant, tag and age, on every tier and every node."""
    runtime = runtime_of(http_request)
    caller = await caller_of(http_request, runtime)
    payload = await parse_body(http_request, runtime, InvalidateRequest)
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
    if payload.retired_only:
        await _refuse_active(runtime, namespaces)
    created_before = None if payload.older_than_s is None else time.time() - payload.older_than_s
    results: dict[str, InvalidatedCounts] = {}
    for namespace in namespaces:
        scope = InvalidationScope(
            namespace=namespace,
            tenant=tenant,
            tags=tuple(payload.tags),
            created_before=created_before,
        )
        try:
            if payload.similar_to is not None:
                similar = payload.similar_to
                found = await invalidate_similar(
                    runtime.engine,
                    scope,
                    similar.text,
                    similar.min_similarity,
                    similar.limit,
                    dry_run=payload.dry_run,
                )
                scope = found.scope
                results[namespace] = InvalidatedCounts.model_validate(found.counts)
                if not scope.entry_ids:
                    continue  # nothing matched: nothing to tell the other nodes
            else:
                counts = await runtime.engine.invalidate(scope, dry_run=payload.dry_run)
                results[namespace] = InvalidatedCounts.model_validate(counts)
                if payload.retired_only and scope.whole_namespace and not payload.dry_run:
                    await runtime.fleet.drop_namespace_stats(namespace)
        except Exception as exc:
            raise unavailable(f"invalidation of '{namespace}'", exc) from exc
        if not payload.dry_run:
            await runtime.fleet.invalidate(scope)
    if payload.deleting_cache and not payload.dry_run:
        try:
            await runtime.fleet.forget(namespaces)
        except Exception as exc:
            raise unavailable("removal of the fleet state", exc) from exc
    return model_response(InvalidateResult(dry_run=payload.dry_run, tenant=tenant, removed=results))


async def _refuse_active(runtime: NodeRuntime, namespaces: list[str]) -> None:
    """409 if any of `namespaces` is active for a configured namespace (here or persisted)."""
    engine = runtime.engine
    active = dict(engine.router.all_active())
    if runtime.redis is not None:
        # Also the fleet's persisted switches: a node that has not yet applied a switch must
        # not purge the namespace the fleet just activated.
        with contextlib.suppress(Exception):
            persisted = await runtime.fleet.persisted_namespaces()
            for name, namespace in persisted.items():
                if engine.router.get(name) is not None:
                    active[f"{name} (persisted)"] = namespace
    for namespace in namespaces:
        users = sorted(name for name, ns in active.items() if ns == namespace)
        if users:
            raise RequestError(
                409,
                f"namespace '{namespace}' is active (for {', '.join(users)}); "
                "a retired_only purge never deletes entries of an active namespace",
                param="namespace",
                code="namespace_active",
            )


@router.get("/namespaces")
async def namespaces(http_request: Request) -> Response:
    """Configured namespaces, the cache namespace each one uses, the embedding spaces, and the
    entries of every cache namespace this node knows (`null` if the store is unreachable).
    With tenant keys, admin only: it spans every tenant."""
    runtime = runtime_of(http_request)
    await require_admin(http_request, runtime, "reading the fleet's namespaces")
    engine = runtime.engine
    active = engine.router.all_active()
    entries: dict[str, int] | None = None
    try:
        known = set(await engine.store.namespaces())
        known |= set(active.values()) | {engine.router.configured(n) for n in active}
        known |= set(engine.stats.totals)
        entries = {namespace: await engine.store.count(namespace) for namespace in sorted(known)}
    except Exception:
        entries = None
    return model_response(
        NamespacesReport.model_validate(
            {"active": active, "embedding": engine.spaces.describe(), "entries": entries}
        )
    )


@router.post("/namespaces/switch", openapi_extra=openapi_body(SwitchRequest))
async def switch_namespace(http_request: Request) -> Response:
    """Activate another cache namespace for a configured one, on every node (admin only)."""
    runtime = runtime_of(http_request)
    await require_admin(http_request, runtime, "switching namespaces")
    payload = await parse_body(http_request, runtime, SwitchRequest)
    if runtime.engine.router.get(payload.name) is None:
        raise RequestError(
            404, f"no configured namespace '{payload.name}'", param="name", code="not_found"
        )
    await runtime.fleet.switch_namespace(payload.name, payload.namespace)
    return model_response(ActiveNamespaces(active=runtime.engine.router.all_active()))


@router.get("/stats")
async def stats(http_request: Request) -> Response:
    """Per-namespace requests, hits by tier, entries, tokens and dollars saved. With tenant
    keys, admin only: the counters span every tenant."""
    runtime = runtime_of(http_request)
    await require_admin(http_request, runtime, "reading the fleet's stats")
    engine = runtime.engine
    names = set(engine.router.all_active().values()) | set(engine.stats.totals)
    report: dict[str, NamespaceCounts] = {}
    for namespace in sorted(names):
        fleet: Counters | None = None
        if runtime.redis is not None:
            with contextlib.suppress(Exception):
                fleet = await NamespaceStats.fleet(
                    runtime.redis, runtime.config.redis.key_prefix, namespace
                )
        entries: int | None = None
        with contextlib.suppress(Exception):
            entries = await engine.store.count(namespace)
        report[namespace] = NamespaceCounts(
            node=engine.stats.totals[namespace], fleet=fleet, entries=entries
        )
    return model_response(
        StatsReport(
            node_id=runtime.node_id,
            uptime_s=round(time.time() - runtime.started_at, 1),
            active=engine.router.all_active(),
            namespaces=report,
            l1=L1Usage(
                exact_entries=len(engine.l1_exact),
                exact_bytes=engine.l1_exact.bytes_used,
                semantic_entries=len(engine.l1_semantic),
                budget_bytes=engine.memory_budget.max_bytes,
                tier_bytes=engine.memory_budget.bytes_by_tier(),
                evictions=engine.memory_budget.evictions_by_tier(),
            ),
            tiers=TierFlags(
                store=engine.store.name,
                milvus_connected=engine.vectors is not None and engine.vectors.connected,
                redis=runtime.redis is not None,
            ),
        )
    )
