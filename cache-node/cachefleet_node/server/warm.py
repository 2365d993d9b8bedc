"""Warm-up: refill a cache namespace by replaying the most-hit requests of another one.

After a model-version rollover the new cache namespace starts empty. A warm-up batch takes
entries of the old namespace at positions [offset, offset+limit) of its ranking by
fleet-wide hits, replays each stored canonical request through the upstream with the node's
own credential, and stores the fresh answer with the normal write path — planned exactly as
the proxy would plan the request now, so keys and partitions are those of the active cache
namespace. Idempotent: a request whose key already exists in the target is skipped, so a
retried batch stores nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import orjson
import structlog

from cachefleet_contract.admin import WarmResult
from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.errors import RequestError
from cachefleet_node.core.planning import plan_for_namespace
from cachefleet_node.core.request import parse_chat_request
from cachefleet_node.runtime import NodeRuntime

__all__ = ["WARM_CONCURRENCY", "warm_batch"]

log = structlog.get_logger(__name__)

WARM_CONCURRENCY = 4  # upstream calls in flight per batch
_HEADERS = {"user-agent": "cachefleet-node/warm"}


class _Pacer:
    """Spaces the starts of upstream calls `1 / rate_per_s` apart (no pacing without a rate)."""

    def __init__(self, rate_per_s: float | None) -> None:
        self._interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._next = time.monotonic()

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(self._next, now)
        self._next = slot + self._interval
        await asyncio.sleep(slot - now)


async def warm_batch(
    runtime: NodeRuntime,
    *,
    from_namespace: str,
    ns: NamespaceConfig,
    offset: int,
    limit: int,
    rate_per_s: float | None = None,
) -> WarmResult:
    """Replay ranking positions [offset, offset+limit) of `from_namespace` into `ns`.

    Store errors while reading the ranking raise (the caller answers 503); per-entry
    failures (upstream errors, unreachable tiers) are counted in `failed`.
    """
    started = time.perf_counter()
    store = runtime.engine.store
    total = await store.ranked_count(from_namespace)
    entries = await store.top_entries(from_namespace, offset, limit)
    total = max(total, offset + len(entries))  # the ranking may grow between the two reads
    positions = max(0, min(limit, total - offset))
    pacer = _Pacer(rate_per_s)
    gate = asyncio.Semaphore(WARM_CONCURRENCY)

    async def replay(entry: CacheEntry) -> str:
        async with gate:
            return await _replay(runtime, ns, entry, pacer)

    outcomes = Counter(await asyncio.gather(*(replay(entry) for entry in entries)))
    # Positions whose entry expired (or was unreadable) since it was ranked: nothing to replay.
    outcomes["skipped"] += max(0, positions - len(entries))
    for outcome, count in outcomes.items():
        runtime.metrics.warm_requests.labels(outcome).inc(count)
    next_offset = offset + positions
    result = WarmResult(
        processed=outcomes["stored"] + outcomes["skipped"] + outcomes["failed"],
        stored=outcomes["stored"],
        skipped=outcomes["skipped"],
        failed=outcomes["failed"],
        next_offset=next_offset,
        total=total,
        done=next_offset >= total,
    )
    log.info(
        "warm_batch",
        from_namespace=from_namespace,
        name=ns.name,
        namespace=runtime.engine.router.active(ns.name),
        offset=offset,
        limit=limit,
        rate_per_s=rate_per_s,
        processed=result.processed,
        stored=result.stored,
        skipped=result.skipped,
        failed=result.failed,
        next_offset=result.next_offset,
        total=result.total,
        done=result.done,
        duration_s=round(time.perf_counter() - started, 3),
    )
    return result


async def _replay(
    runtime: NodeRuntime, ns: NamespaceConfig, entry: CacheEntry, pacer: _Pacer
) -> str:
    """`stored`, `skipped` (nothing to do) or `failed` for one ranked entry."""
    if entry.request is None:
        return "skipped"  # stored before entries remembered their request, or too large
    engine = runtime.engine
    try:
        body = orjson.loads(entry.request)
        if not isinstance(body, dict):
            return "skipped"
        request = parse_chat_request(body)
    except (orjson.JSONDecodeError, RequestError):
        return "skipped"
    if engine.router.resolve(request.model) is not ns:
        return "skipped"  # the proxy would not serve this model from `ns`: never a hit there
    plan = plan_for_namespace(engine.router, ns, {}, request, entry.tenant)
    if not plan.decision.cacheable:
        return "skipped"
    try:
        existing = await engine.store.get(plan.namespace, plan.tenant, plan.keys.exact)
    except Exception:
        return "failed"
    if existing is not None:
        return "skipped"  # already there (a retried batch, or traffic got there first)
    await pacer.wait()
    headers = runtime.upstream.headers(_HEADERS, use_caller_auth=False)
    try:
        response = await runtime.upstream.send(orjson.dumps(body), headers, stream=False)
        content = await response.aread()
        await response.aclose()
    except httpx.HTTPError:
        runtime.metrics.upstream_responses.labels("unreachable").inc()
        return "failed"
    runtime.metrics.upstream_responses.labels(f"{response.status_code // 100}xx").inc()
    if not response.is_success:
        return "failed"
    try:
        completion = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "failed"
    if not isinstance(completion, dict):
        return "failed"
    outcome = await engine.remember(plan, completion, None)
    return "stored" if outcome == "stored" else "failed"
