"""CacheInvalidation handlers: watch events to the queue (one-shot runs, no finalizer)."""

from __future__ import annotations

from typing import Any

import kopf

from cachefleet_operator.services.controller import Controller

__all__ = ["on_cache_invalidation_event"]


@kopf.on.event("cachefleet.io", "v1alpha1", "cacheinvalidations")
async def on_cache_invalidation_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    controller: Controller = memo["controller"]
    controller.invalidation_event(event.get("type"), body)
