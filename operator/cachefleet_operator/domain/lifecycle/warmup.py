"""Warm-up after a switch (`rollover.warm`): the most-hit prompts of the old namespace are
replayed into the new one, one bounded batch per pass."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime

from cachefleet_contract.admin import WarmRequest, WarmResult
from cachefleet_operator.api.v1alpha1 import RolloverProgress, WarmProgress
from cachefleet_operator.api.v1alpha1.modelversion import Warmup
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.lifecycle.state import Lifecycle, Plan

__all__ = ["MAX_WARM_BATCH", "WARM_STEP_S", "warm_request", "warmed"]

#: Seconds of upstream replay one warm batch aims at (at the configured rate).
WARM_STEP_S = 3.0
#: The node's limit on one `/v1/cache/warm` call.
MAX_WARM_BATCH = 500


def warm_request(record: RolloverProgress, settings: Warmup) -> WarmRequest | None:
    """The next `POST /v1/cache/warm` batch (None when nothing is left): about `WARM_STEP_S`
    at the rate."""
    progress = record.warm or WarmProgress()
    if record.from_namespace is None:
        return None
    budget = settings.top_n if progress.total is None else min(settings.top_n, progress.total)
    left = budget - progress.next_offset
    if left <= 0:
        return None
    per_step = max(1, math.ceil(settings.rate_per_second * WARM_STEP_S))
    return WarmRequest(
        name=record.model_version,
        from_namespace=record.from_namespace,
        offset=progress.next_offset,
        limit=min(MAX_WARM_BATCH, left, per_step),
        rate_per_s=settings.rate_per_second,
    )


def warmed(
    lifecycle: Lifecycle,
    model_version: str,
    result: WarmResult | None,
    *,
    settings: Warmup,
    now: datetime,
) -> Plan:
    """A warm batch's answer (`None`: nothing was left) recorded; done when the top N or the
    whole previous namespace has been replayed."""
    record = lifecycle.rollover(model_version)
    if record is None or record.phase != "Warming":
        return Plan(lifecycle)
    progress = record.warm or WarmProgress()
    done = result is None
    if result is not None:
        known = min(settings.top_n, result.total)
        progress = WarmProgress(
            total=known,
            processed=progress.processed + result.processed,
            stored=progress.stored + result.stored,
            skipped=progress.skipped + result.skipped,
            failed=progress.failed + result.failed,
            next_offset=result.next_offset,
        )
        done = result.done or progress.next_offset >= known
    summary = (
        f"{progress.processed}/{progress.total if progress.total is not None else '?'} "
        f"prompts replayed ({progress.stored} stored, {progress.skipped} skipped, "
        f"{progress.failed} failed)"
    )
    if not done:
        updated = record.model_copy(
            update={"warm": progress, "message": f"warming {record.to_namespace}: {summary}"}
        )
        rollovers = tuple(updated if r is record else r for r in lifecycle.rollovers)
        return Plan(replace(lifecycle, rollovers=rollovers))
    rollovers = tuple(r for r in lifecycle.rollovers if r is not record)
    event = EventSpec(
        "Normal", "WarmupCompleted", f"{model_version}: {record.to_namespace} warmed: {summary}"
    )
    return Plan(replace(lifecycle, rollovers=rollovers), [event])
