"""`deletionPolicy: Delete`: purge a cache's data through its nodes before the children go.

Each active cache namespace is invalidated through `POST /v1/cache/invalidate` on every node
that answers (the shared tiers need one; embedded Milvus Lite lives in each node). While no
node answers, deletion waits and retries, up to `purge_timeout` after the deletion started;
then the data is left in place with a Warning Event and the object is let go, so a broken
fleet can always be deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from cachefleet_contract.admin import InvalidateRequest
from cachefleet_operator.adapters.kube import MODELVERSIONS
from cachefleet_operator.adapters.nodes import NodeError
from cachefleet_operator.api.v1alpha1 import SemanticCache
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.naming import active_cache_namespace
from cachefleet_operator.services.context import Service
from cachefleet_operator.services.events import object_reference
from cachefleet_operator.services.semanticcaches import parse_model_versions

__all__ = ["PurgeOutcome", "Purger"]

log = structlog.get_logger("cachefleet.purge")
RETRY_AFTER_S = 10.0


@dataclass(frozen=True)
class PurgeOutcome:
    """`done`: the object may go (purged, nothing to purge, or given up); else retry later."""

    done: bool
    message: str
    retry_after: float = RETRY_AFTER_S


class Purger(Service):
    """Purges the cached data of a SemanticCache being deleted."""

    async def _namespaces(self, cache: SemanticCache) -> list[str]:
        found = [item.cache_namespace for item in cache.status.active_namespaces]
        found += [item.cache_namespace for item in cache.status.retained_namespaces]
        found += [item.to_namespace for item in cache.status.rollovers]
        refs = {ref.name for ref in cache.spec.model_versions}
        items = await self._kube.list(MODELVERSIONS, cache.metadata.namespace or "")
        for mv in parse_model_versions(items):
            if mv.metadata.name in refs:
                found.append(active_cache_namespace(mv))
        return sorted(set(found))

    def _timed_out(self, body: Mapping[str, Any]) -> bool:
        started = body.get("metadata", {}).get("deletionTimestamp")
        if not started:
            return False
        since = datetime.fromisoformat(str(started).replace("Z", "+00:00"))
        return (self._clock() - since).total_seconds() >= self._config.purge_timeout

    async def purge(self, cache: SemanticCache, body: Mapping[str, Any]) -> PurgeOutcome:
        reference = object_reference(body)
        namespaces = await self._namespaces(cache)
        if not namespaces:
            return PurgeOutcome(True, "no cache namespace to purge")
        key = await self._access.admin_key(cache)
        usable, api_key = key.usable, key.value
        if not usable:
            message = (
                "cannot purge: spec.auth has no admin tenant with a key in "
                f"Secret {cache.spec.auth.api_keys_secret_ref.name if cache.spec.auth else ''}; "
                f"cached data of {', '.join(namespaces)} is retained"
            )
            await self._events.post(reference, EventSpec("Warning", "PurgeSkipped", message))
            return PurgeOutcome(True, message)
        urls = await self._access.endpoints(cache)
        removed: dict[str, int] = {}
        errors: list[str] = []
        for namespace in namespaces:
            for url in urls:
                try:
                    answer = await self._nodes.invalidate(
                        url,
                        InvalidateRequest(namespace=namespace, deleting_cache=True),
                        api_key=api_key,
                    )
                except NodeError as error:
                    errors.append(str(error))
                    continue
                counts = answer.removed.get(namespace)
                entries = 0 if counts is None else counts.store  # l1/vectors count copies
                removed[namespace] = max(removed.get(namespace, 0), entries)
        pending = [namespace for namespace in namespaces if namespace not in removed]
        if not pending:
            self._metrics.purged_entries.labels("deletion").inc(sum(removed.values()))
            summary = ", ".join(f"{ns} ({count} removed)" for ns, count in removed.items())
            message = f"purged cache namespaces {summary}"
            await self._events.post(reference, EventSpec("Normal", "Purged", message))
            return PurgeOutcome(True, message)
        problem = f"no cache node answered for {', '.join(pending)}" + (
            f": {errors[-1]}" if errors else " (no node endpoint)"
        )
        if self._timed_out(body):
            message = f"gave up purging after the deletion timeout: {problem}; data is retained"
            await self._events.post(reference, EventSpec("Warning", "PurgeFailed", message))
            return PurgeOutcome(True, message)
        await self._events.post_error_once(reference, "PurgeRetrying", problem)
        return PurgeOutcome(False, problem)
