"""`POST /v1/embeddings`: exact caching per input item.

Each input item (a text or a token array) is an entry of the exact tier, keyed by cache
namespace (routed by model, like chat), tenant, model, `dimensions` and the item
(`core.keys.embedding_entry_id`), and stored like a chat entry: L1 in-process, L2 in Redis or
the local store, with the namespace's TTL, tags and invalidation. A batch is looked up whole
(L1, then one multi-get in L2); only the items no tier holds go upstream, in one call, and the
answer is assembled in the request's order. Vectors are stored as float32 and encoded per
request (`encoding_format` float or base64), so both formats share entries.

What the cache does not understand (unknown fields, values of other types, a model no
namespace serves) goes to the upstream untouched (`bypass`). Upstream errors are relayed as
they came and never stored; a tier that fails only turns lookups into misses (fail-open).
`usage` counts the tokens the upstream was paid for in this call: 0 on a full hit (the tokens
saved are in `x-cachefleet-saved-tokens` and the metrics).
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from openai.types.embedding_create_params import EmbeddingCreateParams

from cachefleet_node.auth import Caller
from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.controls import CacheControls, parse_controls
from cachefleet_node.core.embeddings import (
    EmbeddingRequest,
    EmbeddingsAnswer,
    Item,
    Vector,
    parse_embedding_request,
    read_stored,
    read_upstream_answer,
    render_response,
    split_tokens,
    stored_answer,
)
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.errors import error_body
from cachefleet_node.core.keys import embedding_entry_id
from cachefleet_node.core.request import decode_json_object
from cachefleet_node.core.savings import saved_dollars
from cachefleet_node.key_check import Rejection
from cachefleet_node.resilience import Breaker, TierGuard
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.common import may_read_hits, openapi_body, runtime_of
from cachefleet_node.server.http import json_response, read_body
from cachefleet_node.server.passthrough import forward_untouched
from cachefleet_node.upstream import response_headers

__all__ = ["drain", "router"]

log = structlog.get_logger("cachefleet_node.request")
router = APIRouter()

MAX_PENDING_WRITES = 2048  # background L2 writes of this route (dropped beyond, like chat's)


_OPENAPI_BODY = openapi_body(EmbeddingCreateParams)


class _RouteState:
    """Per runtime: the guard of this route's entry-store calls and its pending writes."""

    def __init__(self, runtime: NodeRuntime) -> None:
        deadlines = runtime.config.deadlines
        self.guard = TierGuard(
            runtime.engine.store.name,
            Breaker(deadlines.breaker_failures, deadlines.breaker_cooldown_s),
            runtime.metrics,
        )
        self.read_s = deadlines.redis_ms / 1000
        self.write_s = deadlines.write_ms / 1000
        self.pending: set[asyncio.Task[None]] = set()


_STATES: weakref.WeakKeyDictionary[NodeRuntime, _RouteState] = weakref.WeakKeyDictionary()


def _state(runtime: NodeRuntime) -> _RouteState:
    state = _STATES.get(runtime)
    if state is None:
        state = _STATES[runtime] = _RouteState(runtime)
    return state


async def drain(runtime: NodeRuntime) -> None:
    """Wait for this route's background writes (tests, shutdown)."""
    state = _STATES.get(runtime)
    while state is not None and state.pending:
        await asyncio.gather(*list(state.pending), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class _Hit:
    entry: CacheEntry
    vector: Vector
    model: str
    tier: str


@dataclass(slots=True)
class _Lookup:
    hits: dict[str, _Hit] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Batch:
    """One understood request, routed and keyed."""

    request: EmbeddingRequest
    ns: NamespaceConfig
    namespace: str
    tenant: str
    controls: CacheControls
    ids: tuple[str, ...]  # entry id of each item, in the request's order

    @property
    def unique(self) -> list[str]:
        return list(dict.fromkeys(self.ids))


def _hit_of(entry: CacheEntry | None, batch: _Batch, now: float, tier: str) -> _Hit | None:
    """The entry as a hit for this batch, if it is a live embedding of the same partition."""
    if (
        entry is None
        or entry.namespace != batch.namespace
        or entry.tenant != batch.tenant
        or not entry.answers
        or not entry.is_fresh(now, batch.controls.max_age_s)
    ):
        return None
    stored = read_stored(entry.answers[0])
    if stored is None:
        return None
    return _Hit(entry, stored[0], stored[1], tier)


async def _lookup(runtime: NodeRuntime, batch: _Batch) -> _Lookup:
    """L1 for every item, then one multi-get in L2 for the rest (fail-open)."""
    engine = runtime.engine
    found = _Lookup()
    now = time.time()
    wanted = []
    for entry_id in batch.unique:
        hit = _hit_of(engine.l1_exact.get(entry_id, now), batch, now, "l1")
        if hit is None:
            wanted.append(entry_id)
        else:
            found.hits[entry_id] = hit
    if not wanted:
        return found
    state = _state(runtime)
    if engine.store_breaker_open:  # chat's calls found the store down: skip it here too
        found.reasons.append(f"{engine.store.name}-unavailable")
        return found
    fetched = await state.guard.call(
        "get", engine.store.get_many(batch.namespace, batch.tenant, wanted), state.read_s
    )
    if fetched.error or fetched.value is None:
        found.reasons.append(fetched.error or f"{engine.store.name}-error")
        return found
    for entry_id, entry in zip(wanted, fetched.value, strict=True):
        hit = _hit_of(entry, batch, now, "l2")
        if hit is not None:
            engine.l1_exact.put(hit.entry)
            found.hits[entry_id] = hit
    return found


def _weight(item: Item) -> int:
    return len(item)


def _remember(
    runtime: NodeRuntime, batch: _Batch, sent: Sequence[str], answer: EmbeddingsAnswer
) -> None:
    """Store the upstream's vectors of the items sent: L1 now, L2 in the background."""
    if not batch.controls.write:
        return
    engine = runtime.engine
    items = dict(zip(batch.ids, batch.request.items, strict=True))
    shares = split_tokens(answer.prompt_tokens, [_weight(items[entry_id]) for entry_id in sent])
    now = time.time()
    expires = now + (batch.controls.ttl_s or batch.ns.ttl_s)
    model = answer.model or batch.request.model
    entries: dict[str, CacheEntry] = {}
    for entry_id, vector, tokens in zip(sent, answer.vectors, shares, strict=True):
        if entry_id in entries:
            continue
        entry = CacheEntry(
            entry_id=entry_id,
            namespace=batch.namespace,
            tenant=batch.tenant,
            model=batch.request.model,
            created_at=now,
            expires_at=expires,
            answers=(stored_answer(vector, model),),
            tags=batch.controls.tags,
            prompt_tokens=tokens,
        )
        if entry.size_bytes > batch.ns.max_entry_bytes:
            runtime.metrics.writes.labels("skipped-too-large").inc()
            continue
        engine.l1_exact.put(entry)
        entries[entry_id] = entry
    if not entries:
        return
    state = _state(runtime)
    if len(state.pending) >= MAX_PENDING_WRITES:
        runtime.metrics.writes.labels("dropped").inc(len(entries))
        return
    task = asyncio.create_task(_write(runtime, state, list(entries.values())))
    state.pending.add(task)
    task.add_done_callback(state.pending.discard)


async def _write(runtime: NodeRuntime, state: _RouteState, entries: list[CacheEntry]) -> None:
    """The batch's entries into the shared store, in one round trip."""
    stored = await state.guard.call("put", runtime.engine.store.put_many(entries), state.write_s)
    runtime.metrics.writes.labels("stored" if stored.ok else "stored-l1-only").inc(len(entries))


def _provenance(
    batch: _Batch | None,
    result: str,
    reasons: Sequence[str] = (),
    hits: dict[str, _Hit] | None = None,
) -> dict[str, str]:
    headers = {"x-cachefleet-cache": result}
    if batch is not None:
        headers["x-cachefleet-namespace"] = batch.namespace
        served = [entry_id for entry_id in batch.ids if hits and entry_id in hits]
        headers["x-cachefleet-hit-items"] = f"{len(served)}/{len(batch.ids)}"
    if hits:
        tiers = {hit.tier for hit in hits.values()}
        headers["x-cachefleet-tier"] = "l2" if "l2" in tiers else "l1"
        oldest = min(hit.entry.created_at for hit in hits.values())
        headers["age"] = str(max(0, int(time.time() - oldest)))
        headers["x-cachefleet-saved-tokens"] = str(_saved_tokens(batch, hits))
    if reasons:
        headers["x-cachefleet-bypass-reason"] = ",".join(dict.fromkeys(reasons))
    return headers


def _saved_tokens(batch: _Batch | None, hits: dict[str, _Hit]) -> int:
    """Tokens the upstream would have been paid for the items served from cache."""
    if batch is None:
        return 0
    return sum(hits[entry_id].entry.prompt_tokens for entry_id in batch.ids if entry_id in hits)


def _record(
    runtime: NodeRuntime,
    batch: _Batch,
    result: str,
    hits: dict[str, _Hit],
    reasons: Sequence[str],
    started: float,
    status: int,
    upstream_ms: float | None = None,
) -> None:
    """Count a finished request: metrics, stats (a partial hit is a miss there: the upstream
    was called), hit ranking, tokens and dollars saved; one log line."""
    engine, metrics = runtime.engine, runtime.metrics
    tier = ("l2" if any(h.tier == "l2" for h in hits.values()) else "l1") if hits else "none"
    metrics.requests.labels(batch.namespace, result, tier).inc()
    for reason in dict.fromkeys(reasons):
        metrics.bypasses.labels(reason).inc()
    latency = time.perf_counter() - started
    metrics.request_latency.labels(result).observe(latency)
    saved = _saved_tokens(batch, hits)
    cost = saved_dollars(batch.request.model, saved, 0, runtime.config.prices)
    for hit in hits.values():
        entry = hit.entry
        engine.hits.record(entry.namespace, entry.tenant, entry.entry_id, entry.expires_at)
    if saved:
        metrics.tokens_saved.labels(batch.namespace, "prompt").inc(saved)
        metrics.cost_saved.labels(batch.namespace).inc(cost)
    engine.stats.record(
        batch.namespace,
        "miss" if result == "partial" else result,
        prompt_tokens_saved=saved,
        cost_saved=cost,
    )
    fields: dict[str, Any] = {
        "route": "embeddings",
        "namespace": batch.namespace,
        "tenant": batch.tenant,
        "model": batch.request.model,
        "result": result,
        "tier": None if tier == "none" else tier,
        "items": len(batch.ids),
        "hit_items": sum(1 for entry_id in batch.ids if entry_id in hits),
        "latency_ms": round(latency * 1000, 3),
        "upstream_ms": upstream_ms,
        "status": status,
    }
    if reasons:
        fields["reasons"] = list(dict.fromkeys(reasons))
    log.info("request", **fields)


def _fresh_headers() -> dict[str, str]:
    return {"x-request-id": f"req_{uuid.uuid4().hex}"}


@router.post("/v1/embeddings", openapi_extra=_OPENAPI_BODY, tags=["proxy"])
async def embeddings(http_request: Request) -> Response:
    """OpenAI-compatible embeddings, each input item answered from cache when possible."""
    started = time.perf_counter()
    runtime = runtime_of(http_request)
    server = runtime.config.server
    raw = await read_body(http_request, server.max_request_bytes, server.body_timeout_s)
    authorization = http_request.headers.get("authorization")
    caller = runtime.tenants.resolve(authorization)
    body = decode_json_object(raw)
    parsed = parse_embedding_request(body)
    if isinstance(parsed, str):  # not understood: for the upstream to judge
        return await forward_untouched(runtime, http_request, "embeddings", raw, caller, parsed)
    router_ = runtime.engine.router
    ns = router_.resolve(parsed.model)
    if ns is None:
        return await forward_untouched(
            runtime, http_request, "embeddings", raw, caller, "model-not-cached"
        )
    controls = parse_controls(
        http_request.headers,
        min_threshold=ns.min_threshold,
        max_threshold=ns.max_threshold,
        max_ttl_s=ns.ttl_s,
    )
    namespace = router_.active(ns.name)
    batch = _Batch(
        request=parsed,
        ns=ns,
        namespace=namespace,
        tenant=caller.tenant,
        controls=controls,
        ids=tuple(
            embedding_entry_id(
                namespace=namespace,
                tenant=caller.tenant,
                model=parsed.model,
                dimensions=parsed.dimensions,
                item=item,
            )
            for item in parsed.items
        ),
    )

    found = await _lookup(runtime, batch) if controls.read else _Lookup(reasons=["no-cache"])
    reasons = found.reasons
    hits = found.hits
    if hits:
        allowed = await may_read_hits(runtime, caller, authorization)
        if isinstance(allowed, Rejection):
            reasons.append("key-rejected")
            _record(runtime, batch, "bypass", {}, reasons, started, allowed.status)
            return Response(
                allowed.body,
                status_code=allowed.status,
                media_type=allowed.content_type,
                headers=_provenance(batch, "bypass", reasons),
            )
        if not allowed:  # undecided: the upstream checks the credential, as on a miss
            hits = {}
            reasons.append("key-unverified")

    if len(hits) == len(batch.unique):
        model = next(iter(hits.values())).model
        vectors = [hits[entry_id].vector for entry_id in batch.ids]
        content = render_response(vectors, parsed.encoding_format, model, 0, 0)
        _record(runtime, batch, "hit-exact", hits, reasons, started, 200)
        return Response(
            content,
            media_type="application/json",
            headers={**_provenance(batch, "hit-exact", reasons, hits), **_fresh_headers()},
        )
    return await _with_upstream(
        runtime, http_request, raw, body, caller, batch, hits, reasons, started
    )


async def _with_upstream(
    runtime: NodeRuntime,
    http_request: Request,
    raw: bytes,
    body: dict[str, Any],
    caller: Caller,
    batch: _Batch,
    hits: dict[str, _Hit],
    reasons: list[str],
    started: float,
) -> Response:
    """Send the items no tier holds upstream in one call; answer in the request's order."""
    if hits:
        sent = [entry_id for entry_id in batch.unique if entry_id not in hits]
        items = dict(zip(batch.ids, batch.request.items, strict=True))
        inputs = [
            list(item) if isinstance(item, tuple) else item for item in (items[e] for e in sent)
        ]
        payload = orjson.dumps({**body, "input": inputs})
        result = "partial"
    else:  # every item: the client's own request, byte for byte
        sent, payload = list(batch.ids), raw
        result = "bypass" if reasons else "miss"
    authorization = http_request.headers.get("authorization")
    headers = runtime.upstream.headers(http_request.headers, caller.forward_auth)
    upstream_started = time.perf_counter()
    try:
        upstream = await runtime.upstream.post("/embeddings", payload, headers)
    except httpx.HTTPError as exc:
        runtime.metrics.upstream_responses.labels("unreachable").inc()
        timed_out = isinstance(exc, httpx.TimeoutException)
        status = 504 if timed_out else 502
        _record(runtime, batch, result, {}, reasons, started, status)
        return json_response(
            error_body(
                f"upstream {'timed out' if timed_out else 'is unreachable'}",
                "upstream_error",
                None,
                "upstream_unavailable",
            ),
            status,
            headers=_provenance(batch, result, reasons),
        )
    upstream_ms = round((time.perf_counter() - upstream_started) * 1000, 3)
    runtime.metrics.upstream_responses.labels(f"{upstream.status_code // 100}xx").inc()
    runtime.metrics.tier_latency.labels("upstream", "complete").observe(upstream_ms / 1000)
    if caller.forward_auth and upstream.is_success:
        runtime.key_verdicts.learn_accepted(authorization)
    if caller.forward_auth and upstream.status_code in (401, 403):
        content_type = upstream.headers.get("content-type", "application/json")
        runtime.key_verdicts.learn_rejected(
            authorization, Rejection(upstream.status_code, upstream.content, content_type)
        )
    relayed = response_headers(upstream.headers)
    answer = read_upstream_answer(upstream.content, len(sent)) if upstream.is_success else None
    if answer is None:
        if upstream.is_success:  # a 2xx the cache cannot read: nothing stored, nothing merged
            reasons.append("bad-upstream-answer")
            if hits:  # the client's own request then, untouched
                _record(runtime, batch, "bypass", {}, reasons, started, upstream.status_code)
                return await forward_untouched(
                    runtime, http_request, "embeddings", raw, caller, "bad-upstream-answer"
                )
            result = "bypass"
        # an error (or unreadable answer) relayed as the upstream sent it, never stored
        _record(runtime, batch, result, {}, reasons, started, upstream.status_code, upstream_ms)
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            headers={**relayed, **_provenance(batch, result, reasons)},
        )
    _remember(runtime, batch, sent, answer)
    fresh = dict(zip(sent, answer.vectors, strict=True))
    vectors = [hits[e].vector if e in hits else fresh[e] for e in batch.ids]
    content = render_response(
        vectors,
        batch.request.encoding_format,
        answer.model or batch.request.model,
        answer.prompt_tokens,
        answer.total_tokens,
    )
    relayed.pop("content-type", None)
    _record(runtime, batch, result, hits, reasons, started, upstream.status_code, upstream_ms)
    return Response(
        content,
        status_code=upstream.status_code,
        media_type="application/json",
        headers={**relayed, **_provenance(batch, result, reasons, hits)},
    )
