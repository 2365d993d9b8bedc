"""`POST /v1/chat/completions`: the OpenAI-compatible caching proxy, and the lookup, hit,
single-flight and write-back flow it shares with the other cached answers (`CachedApi`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from cachefleet_node.auth import Caller
from cachefleet_node.core.entry import as_served_hit, requested_logprobs, with_logprobs
from cachefleet_node.core.errors import error_body
from cachefleet_node.core.planning import LookupPlan, Outcome, plan_request, response_headers_for
from cachefleet_node.core.request import ChatCompletionBody, ChatRequest, decode_json_object
from cachefleet_node.core.stream import StreamRecorder, UsageChunkFilter, replay_chunks
from cachefleet_node.flights import Lease
from cachefleet_node.key_check import Rejection
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.common import may_read_hits, openapi_body
from cachefleet_node.server.http import json_response, read_body
from cachefleet_node.upstream import response_headers

__all__ = ["CHAT", "CachedApi", "Recorder", "Served", "answer_cached", "router"]

log = structlog.get_logger("cachefleet_node.request")
router = APIRouter()

_STREAM_INTERRUPTED = (
    b"data: "
    + orjson.dumps(
        error_body("upstream stream interrupted", "upstream_error", None, "stream_interrupted")
    )
    + b"\n\n"
)

_OPENAPI_BODY = openapi_body(ChatCompletionBody)


class Recorder(Protocol):
    """Rebuilds a streamed answer from the SSE bytes relayed to the client."""

    failed: str | None  # why nothing is recorded

    def feed(self, data: bytes) -> None:
        """Consume the next bytes of the stream."""

    def completion(self) -> dict[str, Any] | None:
        """The whole answer, or None if the stream must not be cached."""


#: A stored answer served as a new response: a JSON body or SSE events, and its headers.
Served = tuple[bytes | list[bytes], dict[str, str]]


@dataclass(frozen=True, slots=True)
class CachedApi:
    """What differs between the cached OpenAI APIs: the upstream path that answers, how a
    stored answer is served to a request, how a stream is recorded, and whether a streamed
    request asks the upstream for the usage it would otherwise leave out."""

    path: str
    serve: Callable[[ChatRequest, dict[str, Any]], Served]
    recorder: Callable[[int], Recorder]
    asks_usage: bool


def _runtime(request: Request) -> NodeRuntime:
    runtime: NodeRuntime = request.app.state.runtime
    return runtime


@dataclass(slots=True)
class _Exchange:
    """One request, and how it was answered: recorded once when it is (`_record`)."""

    runtime: NodeRuntime
    http_request: Request
    raw: bytes
    request: ChatRequest
    plan: LookupPlan
    caller: Caller
    outcome: Outcome
    started: float  # perf_counter() when the request arrived
    stream: bool
    api: CachedApi
    status: int | None = None  # None: not answered (yet: a relayed stream records at its end)
    upstream_ms: float | None = None
    lease: Lease | None = None  # this node's fleet lease on the exact key while it leads

    @property
    def authorization(self) -> str | None:
        """The caller's credential, as sent."""
        return self.http_request.headers.get("authorization")


def _record(exchange: _Exchange) -> None:
    """Count an answered request (stats, metrics) and write its log line."""
    runtime, plan, outcome = exchange.runtime, exchange.plan, exchange.outcome
    runtime.engine.record(plan.namespace, plan.model, outcome)
    latency = time.perf_counter() - exchange.started
    runtime.metrics.request_latency.labels(outcome.result).observe(latency)
    fields: dict[str, Any] = {
        "namespace": plan.namespace,
        "tenant": plan.tenant,
        "model": plan.model,
        "result": outcome.result,
        "tier": outcome.tier,
        "similarity": None if outcome.similarity is None else round(outcome.similarity, 4),
        "latency_ms": round(latency * 1000, 3),
        "upstream_ms": exchange.upstream_ms,
        "status": exchange.status,
        "stream": exchange.stream,
    }
    if outcome.reasons:
        fields["reasons"] = outcome.reasons
    if outcome.judgement is not None and outcome.judgement.verifier is not None:
        fields["verifier"] = round(outcome.judgement.verifier, 4)
    if outcome.vetoes:
        fields["vetoes"] = outcome.vetoes
    if runtime.config.logging.log_prompts and plan.keys.semantic is not None:
        fields["prompt"] = plan.keys.semantic.text
    log.info("request", **fields)


def _hit_response(exchange: _Exchange) -> Response | None:
    """The cached answer as JSON or a replayed stream, as a new response (`CachedApi.serve`);
    None when the stored answer cannot be replayed (an entry of another shape: the request
    then goes upstream)."""
    request, plan, outcome = exchange.request, exchange.plan, exchange.outcome
    assert outcome.answer is not None
    assert outcome.entry is not None
    try:
        stored = orjson.loads(outcome.answer)
        if not isinstance(stored, dict):
            raise TypeError("not an answer object")
        content, fresh = exchange.api.serve(request, stored)
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError, KeyError):
        log.warning("unreplayable_entry", namespace=plan.namespace, entry_id=outcome.entry.entry_id)
        return None
    headers = {
        **response_headers_for(
            plan,
            outcome.result,
            tier=outcome.tier,
            similarity=outcome.similarity,
            age_s=time.time() - outcome.entry.created_at,
            judgement=outcome.judgement,
            vetoes=outcome.vetoes,
        ),
        **fresh,
    }
    return _served_response(content, headers)


def _served_response(content: bytes | list[bytes], headers: dict[str, str]) -> Response:
    """A served answer: a JSON body, or SSE events streamed."""
    if isinstance(content, bytes):
        return Response(content, media_type="application/json", headers=headers)
    return StreamingResponse(
        iter(content),
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache"},
    )


def _serve_chat(request: ChatRequest, stored: dict[str, Any]) -> Served:
    """A stored chat completion served to `request` (with the logprobs it asks for, if any):
    as JSON, or replayed as chunks."""
    served, fresh = _served_hit(with_logprobs(stored, requested_logprobs(request.body)))
    if request.stream:
        return list(replay_chunks(served, include_usage=request.include_usage)), fresh
    return orjson.dumps(served), fresh


def _served_hit(stored: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A stored completion as a new response, and the headers naming both: a fresh
    `x-request-id`, and the id and creation time of the answer it reuses."""
    token = uuid.uuid4().hex
    served = as_served_hit(stored, response_id=f"chatcmpl-cf{token[:24]}", created=int(time.time()))
    headers = {
        "x-request-id": f"req_{token}",
        "x-cachefleet-original-id": str(stored.get("id", "")),
        "x-cachefleet-original-created": str(stored.get("created", "")),
    }
    return served, headers


def _with_usage(request: ChatRequest) -> bytes:
    """The request body asking for the usage chunk of a stream."""
    options = request.body.get("stream_options")
    merged = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return orjson.dumps({**request.body, "stream_options": merged})


def _land(
    exchange: _Exchange,
    flight: str | None,
    completion: dict[str, Any] | None,
    written: asyncio.Task[Any] | None = None,
) -> None:
    """Share the leader's outcome (None: nothing to share) with this node's followers and
    give the fleet lease back: once `written` (the answer's write-back) is done, or now."""
    runtime = exchange.runtime
    if flight is not None:
        runtime.flights.land(flight, completion)
    if exchange.lease is not None and runtime.leases is not None:
        runtime.leases.release(exchange.lease, written if completion is not None else None)


def _storable(completion: dict[str, Any], plan: LookupPlan) -> bool:
    return plan.unstorable(completion, len(orjson.dumps(completion))) is None


def _unverified(outcome: Outcome, reason: str) -> Outcome:
    """A hit that may not be served to this caller: a bypass that keeps the query vector."""
    return Outcome(
        "bypass",
        reasons=[reason],
        vector=outcome.vector,
        vector_space=outcome.vector_space,
        vetoes=outcome.vetoes,
    )


def _rejection_response(plan: LookupPlan, outcome: Outcome, rejection: Rejection) -> Response:
    """The upstream's own refusal of the caller's credential, as it sent it."""
    headers = response_headers_for(plan, outcome.result, reasons=outcome.reasons)
    return Response(
        rejection.body,
        status_code=rejection.status,
        media_type=rejection.content_type,
        headers=headers,
    )


def _upstream_unreachable(exchange: _Exchange, exc: Exception) -> Response:
    timed_out = isinstance(exc, httpx.TimeoutException)
    exchange.status = 504 if timed_out else 502
    causes: list[str] = []  # what httpx wraps: a reset, an EOF, a locally closed stream
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(causes) < 4:
        causes.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    log.warning(
        "upstream_unreachable", error=type(exc).__name__, detail=str(exc)[:200], causes=causes
    )
    plan, outcome = exchange.plan, exchange.outcome
    return json_response(
        error_body(
            f"upstream {'timed out' if timed_out else 'is unreachable'}",
            "upstream_error",
            None,
            "upstream_unavailable",
        ),
        exchange.status,
        headers=response_headers_for(plan, outcome.result, reasons=outcome.reasons),
    )


@router.post("/v1/chat/completions", openapi_extra=_OPENAPI_BODY, tags=["proxy"])
async def chat_completions(http_request: Request) -> Response:
    """OpenAI-compatible chat completions, answered from cache when possible."""
    started = time.perf_counter()
    runtime = _runtime(http_request)
    raw = await read_body(
        http_request, runtime.config.server.max_request_bytes, runtime.config.server.body_timeout_s
    )
    caller = runtime.tenants.resolve(http_request.headers.get("authorization"))
    body = decode_json_object(raw)
    request, plan = plan_request(runtime.engine.router, http_request.headers, body, caller.tenant)
    return await answer_cached(http_request, raw, request, plan, caller, started, CHAT)


async def answer_cached(
    http_request: Request,
    raw: bytes,
    request: ChatRequest,
    plan: LookupPlan,
    caller: Caller,
    started: float,
    api: CachedApi,
) -> Response:
    """Answer a planned request of `api` (its body `raw`, arrived at perf_counter `started`)
    from cache, a concurrent identical request's answer, or the upstream; count it."""
    runtime = _runtime(http_request)
    outcome = await runtime.engine.lookup(plan)
    exchange = _Exchange(
        runtime, http_request, raw, request, plan, caller, outcome, started, request.stream, api
    )
    try:
        return await _respond(exchange)
    finally:
        if exchange.status is not None:
            _record(exchange)


async def _respond(exchange: _Exchange) -> Response:
    """The cached answer, a follower's share of an identical request's, or the upstream's;
    sets how it answered in `exchange`."""
    runtime, plan = exchange.runtime, exchange.plan
    if exchange.outcome.hit:
        hit = await _serve_hit(exchange)
        if hit is not None:
            return hit

    flight = plan.keys.exact if _coalescible(plan) else None
    if flight is not None:
        airborne = runtime.flights.take(flight)
        if airborne is not None:  # an identical request is upstream now: share its answer
            shared = await runtime.flights.wait(airborne, runtime.config.upstream.timeout_s)
            if shared is not None:
                response = await _shared(exchange, shared)
                if response is not None:
                    return response
            flight = None  # nothing shared: call the upstream, not as a leader
    relayed = False
    try:
        if flight is not None and runtime.leases is not None:
            landed = await _from_fleet(exchange, flight)
            if landed is not None:
                return landed
        response = await _from_upstream(exchange, flight)
        relayed = isinstance(response, StreamingResponse)  # its stream lands the flight
        return response
    finally:
        if flight is not None and not relayed:
            _land(exchange, flight, None)  # no-op when the answer landed already


async def _serve_hit(exchange: _Exchange) -> Response | None:
    """A found entry served to the caller, or the upstream's refusal of its credential; None
    (the outcome turned into a bypass) when the request must go upstream after all."""
    runtime, plan, outcome = exchange.runtime, exchange.plan, exchange.outcome
    allowed = await may_read_hits(runtime, exchange.caller, exchange.authorization)
    if isinstance(allowed, Rejection):
        exchange.outcome = _unverified(outcome, "key-rejected")
        exchange.status, exchange.stream = allowed.status, False
        return _rejection_response(plan, exchange.outcome, allowed)
    served = _hit_response(exchange) if allowed else None
    if served is not None:
        exchange.status = 200
        return served
    # undecided credential (the upstream checks it itself, as on a miss) or an entry that
    # cannot be replayed (counted, never served as an error)
    exchange.outcome = _unverified(outcome, "key-unverified" if not allowed else "bad-entry")
    return None


async def _from_fleet(exchange: _Exchange, flight: str) -> Response | None:
    """Lead the fleet's flight of the exact key (the lease is kept in `exchange`), or serve
    the answer another node's call stored meanwhile, to this node's followers too; None: call
    the upstream."""
    runtime, plan = exchange.runtime, exchange.plan
    assert runtime.leases is not None
    exchange.lease, landed = await runtime.leases.take(
        plan.namespace, plan.tenant, flight, lambda: runtime.engine.landed(plan)
    )
    if landed is None:
        return None
    exchange.outcome = landed
    response = await _serve_hit(exchange)
    if response is not None and exchange.status == 200 and landed.answer is not None:
        runtime.flights.land(flight, orjson.loads(landed.answer))
    return response


def _coalescible(plan: LookupPlan) -> bool:
    """Whether identical concurrent misses may share one upstream call: cacheable, read and
    written, one answer per entry, no logprobs asked for (out of the key: a leader's answer
    may have none)."""
    return (
        plan.decision.cacheable
        and plan.controls.read
        and plan.controls.write
        and plan.decision.sample_size == 1
        and plan.logprobs is None
    )


async def _shared(exchange: _Exchange, completion: dict[str, Any]) -> Response | None:
    """A follower's answer from the leader's completion (None: go upstream after all)."""
    runtime, request, plan = exchange.runtime, exchange.request, exchange.plan
    allowed = await may_read_hits(runtime, exchange.caller, exchange.authorization)
    if isinstance(allowed, Rejection):
        exchange.outcome = Outcome("bypass", reasons=["key-rejected"])
        exchange.status, exchange.stream = allowed.status, False
        return _rejection_response(plan, exchange.outcome, allowed)
    if not allowed:
        return None
    content, fresh = exchange.api.serve(request, completion)
    exchange.outcome = Outcome("hit-exact", tier="inflight", answer=orjson.dumps(completion))
    exchange.status = 200
    runtime.metrics.coalesced.inc()
    headers = {**response_headers_for(plan, exchange.outcome.result, tier="inflight"), **fresh}
    return _served_response(content, headers)


async def _from_upstream(exchange: _Exchange, flight: str | None) -> Response:
    """The upstream's answer, relayed; written back when cacheable; landed for followers."""
    runtime, request, plan = exchange.runtime, exchange.request, exchange.plan
    outcome = exchange.outcome
    raw, caller, authorization = exchange.raw, exchange.caller, exchange.authorization
    headers = runtime.upstream.headers(exchange.http_request.headers, caller.forward_auth)
    upstream_started = time.perf_counter()
    deadline = runtime.upstream.deadline()  # connect, first byte and whole body
    # A streamed answer is stored with its token counts: ask for them, hide them from a client
    # that did not (an upstream that refuses `stream_options` is asked without from then on).
    ask_usage = (
        exchange.api.asks_usage
        and request.stream
        and not request.include_usage
        and plan.decision.cacheable
        and plan.controls.write
        and runtime.upstream.accepts_stream_options
    )
    try:
        upstream = await runtime.upstream.post(
            exchange.api.path,
            _with_usage(request) if ask_usage else raw,
            headers,
            stream=request.stream,
            deadline=deadline,
        )
        if ask_usage and upstream.status_code == 400:
            refusal = await upstream.aread()  # kept by the response: relayed below if final
            if b"stream_options" in refusal:
                await upstream.aclose()
                runtime.upstream.accepts_stream_options = False
                log.warning("upstream_refuses_stream_options")
                upstream = await runtime.upstream.post(
                    exchange.api.path, raw, headers, stream=request.stream, deadline=deadline
                )
            ask_usage = False
    except httpx.HTTPError as exc:
        runtime.metrics.upstream_responses.labels("unreachable").inc()
        return _upstream_unreachable(exchange, exc)

    runtime.metrics.upstream_responses.labels(f"{upstream.status_code // 100}xx").inc()
    if caller.forward_auth and upstream.is_success:
        runtime.key_verdicts.learn_accepted(authorization)
    out_headers = {
        **response_headers(upstream.headers),
        **response_headers_for(
            plan, outcome.result, reasons=outcome.reasons, vetoes=outcome.vetoes
        ),
    }
    is_sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
    if request.stream and upstream.is_success and is_sse:
        return StreamingResponse(
            _relay_stream(
                exchange,
                upstream,
                upstream_started,
                deadline,
                flight,
                ask_usage,
            ),
            status_code=upstream.status_code,
            headers=out_headers,
            media_type="text/event-stream",
            # lands the flight even when the client left before the stream began
            background=BackgroundTask(_land, exchange, flight, None),
        )

    try:
        if upstream.is_stream_consumed:  # read whole by `send` (not streamed) or a refusal
            content = upstream.content
        else:
            content = b"".join([part async for part in runtime.upstream.relay(upstream, deadline)])
    except httpx.HTTPError as exc:
        return _upstream_unreachable(exchange, exc)
    finally:
        await upstream.aclose()
    upstream_ms = round((time.perf_counter() - upstream_started) * 1000, 3)
    runtime.metrics.tier_latency.labels("upstream", "complete").observe(upstream_ms / 1000)
    exchange.status, exchange.upstream_ms = upstream.status_code, upstream_ms
    if caller.forward_auth and upstream.status_code in (401, 403):
        content_type = upstream.headers.get("content-type", "application/json")
        runtime.key_verdicts.learn_rejected(
            authorization, Rejection(upstream.status_code, content, content_type)
        )
    if upstream.is_success and not request.stream:
        try:
            completion = orjson.loads(content)
        except orjson.JSONDecodeError:
            completion = None
        if isinstance(completion, dict):
            written = runtime.engine.remember_later(
                plan, completion, outcome.vector, outcome.vector_space
            )
            if plan.unstorable(completion, len(content)) is None:
                _land(exchange, flight, completion, written)
    return Response(content, status_code=upstream.status_code, headers=out_headers)


async def _relay_stream(
    exchange: _Exchange,
    upstream: httpx.Response,
    upstream_started: float,
    deadline: float,
    flight: str | None = None,
    hide_usage: bool = False,
) -> AsyncIterator[bytes]:
    """Pass the upstream stream through while recording it; store it (and land it for the
    followers of its flight) only if it completed; count the request when it ends."""
    runtime, plan, outcome = exchange.runtime, exchange.plan, exchange.outcome
    recorder = exchange.api.recorder(plan.ns.max_entry_bytes * 8)
    usage_filter = UsageChunkFilter() if hide_usage else None
    completed = False
    try:
        async for chunk in runtime.upstream.relay(upstream, deadline):
            try:
                recorder.feed(chunk)
            except Exception:  # the recorder never breaks a relay; record nothing then
                log.exception("stream_recorder_failed")
                recorder.failed = "recorder-error"
            out = chunk if usage_filter is None else usage_filter.feed(chunk)
            if out:
                yield out
        if usage_filter is not None and (rest := usage_filter.flush()):
            yield rest
        completed = True
    except httpx.HTTPError:
        recorder.failed = "upstream-broken"
        yield _STREAM_INTERRUPTED
    finally:
        await upstream.aclose()
        upstream_ms = round((time.perf_counter() - upstream_started) * 1000, 3)
        runtime.metrics.tier_latency.labels("upstream", "stream").observe(upstream_ms / 1000)
        completion = recorder.completion() if completed else None
        written = None
        if completion is not None:
            written = runtime.engine.remember_later(
                plan, completion, outcome.vector, outcome.vector_space
            )
        else:
            runtime.metrics.writes.labels("skipped-partial-stream").inc()
        shareable = completion is not None and _storable(completion, plan)
        _land(exchange, flight, completion if shareable else None, written)
        exchange.status, exchange.stream, exchange.upstream_ms = (
            upstream.status_code,
            True,
            upstream_ms,
        )
        _record(exchange)


#: Chat completions (`POST /v1/chat/completions`).
CHAT = CachedApi(
    path="/chat/completions",
    serve=_serve_chat,
    recorder=StreamRecorder,
    asks_usage=True,
)
