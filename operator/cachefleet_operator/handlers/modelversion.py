"""ModelVersion handlers: watch events to the queue; dependants through the kopf index."""

from __future__ import annotations

from typing import Any

import kopf

from cachefleet_operator.services.controller import Controller

__all__ = ["on_model_version_event"]


@kopf.on.event("cachefleet.io", "v1alpha1", "modelversions")
async def on_model_version_event(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    controller: Controller = memo["controller"]
    # The kopf index of semanticcache.model_version_dependents, by its id.
    dependents: kopf.Index[tuple[str, str], str] = kwargs["model_version_dependents"]
    if controller.model_version_event(event.get("type"), body):
        for cache in dependents.get((namespace or "", name), []):
            controller.enqueue_cache(namespace or "", cache, reset=True)
