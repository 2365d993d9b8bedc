"""SemanticCache handlers: watch events to the queue, the dependency index, deletion purge.

No kopf daemons or timers on SemanticCaches: kopf puts its finalizer on every object that has
one, and a finalizer belongs only on caches whose deletion must purge data. The periodic work
(resync, stats) runs in the operator's own queue and collector instead.
"""

from __future__ import annotations

from typing import Any

import kopf

from cachefleet_operator.services.controller import Controller

__all__ = ["deletion_purges_data", "model_version_dependents", "on_cache_event", "purge"]

GROUP, VERSION, PLURAL = "cachefleet.io", "v1alpha1", "semanticcaches"


@kopf.index(GROUP, VERSION, PLURAL)
async def model_version_dependents(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str]:
    """(namespace, ModelVersion name) → names of the SemanticCaches that reference it."""
    return {
        (namespace or "", str(ref.get("name"))): name for ref in spec.get("modelVersions") or []
    }


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_cache_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller: Controller = memo["controller"]
    controller.cache_event(event.get("type"), body)


def deletion_purges_data(spec: kopf.Spec, **_: Any) -> bool:
    """Only `deletionPolicy: Delete` needs a finalizer (kopf adds it only then)."""
    return spec.get("deletionPolicy") == "Delete"


@kopf.on.delete(GROUP, VERSION, PLURAL, when=deletion_purges_data)
async def purge(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Purge the cached data through a node before the children are garbage-collected."""
    controller: Controller = memo["controller"]
    outcome = await controller.purge(body)
    if not outcome.done:
        raise kopf.TemporaryError(outcome.message, delay=outcome.retry_after)
