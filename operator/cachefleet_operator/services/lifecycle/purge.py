"""The purge step: retired cache namespaces whose retention is over are purged on the nodes."""

from __future__ import annotations

from cachefleet_contract.admin import InvalidateRequest
from cachefleet_operator.adapters.nodes import NodeError
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.lifecycle.purge import due_purges, purged
from cachefleet_operator.services.context import Service
from cachefleet_operator.services.events import object_reference
from cachefleet_operator.services.lifecycle.step import FleetPass
from cachefleet_operator.services.lifecycle.switching import namespace_reports

__all__ = ["PurgeStep"]


class PurgeStep(Service):
    """Purges due retired namespaces with `POST /v1/cache/invalidate {retired_only}`."""

    async def run(self, fleet: FleetPass) -> None:
        """Purge retired namespaces whose retention is over. Never one that any node reports
        active (checked first), and every node is asked with `retired_only` (it refuses with
        409 if it serves the namespace itself)."""
        step, urls, api_key = fleet.step, fleet.urls, fleet.api_key
        now = self._clock()
        due = due_purges(step.lifecycle, now)
        if due and not urls:
            step.retry("NoNodeEndpoint")
            return
        reports = await namespace_reports(self._nodes, urls, api_key) if due else {}
        for entry in due:
            removed, vectors, answered = 0, 0, 0
            blocked = sorted(
                url
                for url, report in reports.items()
                if entry.cache_namespace in report.active.values()
            )
            errors: list[str] = []
            for url in [] if blocked else urls:  # shared tiers: the first removes it
                try:
                    answer = await self._nodes.invalidate(
                        url,
                        InvalidateRequest(namespace=entry.cache_namespace, retired_only=True),
                        api_key=api_key,
                    )
                except NodeError as error:
                    if error.status == 409:
                        blocked.append(url)
                    else:
                        errors.append(str(error))
                    continue
                answered += 1
                counts = answer.removed.get(entry.cache_namespace)
                if counts is not None:
                    removed = max(removed, counts.store)
                    vectors += counts.vectors
            reference = object_reference(fleet.cache.to_api())
            if blocked:
                await self._events.post_error_once(
                    reference,
                    "PurgeBlocked",
                    f"cache namespace {entry.cache_namespace} is still active on "
                    f"{', '.join(blocked)}: not purged (retrying)",
                )
                step.retry("PurgeBlocked")
                continue
            if not answered:
                await self._events.post_error_once(
                    reference,
                    "PurgeRetrying",
                    f"no cache node answered the purge of {entry.cache_namespace}: "
                    f"{errors[-1] if errors else 'no endpoint'}",
                )
                step.retry("PurgeUnanswered")
                continue
            reason = "flush" if entry.purge_after <= entry.retired_at else "retention"
            self._metrics.purged_entries.labels(reason).inc(removed)
            step.lifecycle = purged(step.lifecycle, entry.cache_namespace)
            step.events.append(
                EventSpec(
                    "Normal",
                    "Purged",
                    f"purged retired cache namespace {entry.cache_namespace} of "
                    f"{entry.model_version} ({removed} entries, {vectors} vectors; {reason})",
                )
            )
        upcoming = [e.purge_after for e in step.lifecycle.retained if e.purge_after > now]
        if upcoming:
            step.soon((min(upcoming) - now).total_seconds() + 0.2)
