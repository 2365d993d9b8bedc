"""One pass of a CacheInvalidation: a one-shot purge through the cache's nodes.

```
Succeeded/Failed? ─► nothing (never runs twice)
cache, scope ─► namespaces (or Failed) ─► status Running (start time, namespaces)
per namespace not done:  dry run ─► status (matched) ─► removal ─► status (removed, done)
all done ─► Succeeded + Event (on the CacheInvalidation and on the SemanticCache)
nodes unreachable ─► retried with backoff up to --purge-timeout from the start, then Failed
a node refusing the scope (4xx) ─► Failed
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

import structlog
from pydantic import ValidationError

from cachefleet_contract.admin import InvalidateRequest, InvalidateResult
from cachefleet_operator.adapters.kube import (
    CACHEINVALIDATIONS,
    SEMANTICCACHES,
    ApiError,
)
from cachefleet_operator.adapters.nodes import NodeError
from cachefleet_operator.api.v1alpha1 import CacheInvalidation, SemanticCache
from cachefleet_operator.api.v1alpha1.cacheinvalidation import (
    CacheInvalidationStatus,
    RemovedCounts,
)
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.invalidation import (
    ScopeError,
    combine,
    completed_status,
    failed_status,
    finished,
    namespace_status,
    node_request,
    running_status,
    target_namespaces,
)
from cachefleet_operator.domain.render import FIELD_MANAGER
from cachefleet_operator.services.context import Outcome, Service, invalid_message
from cachefleet_operator.services.events import object_reference

__all__ = ["InvalidationReconciler"]

log = structlog.get_logger("cachefleet.invalidation")


class _Retry(Exception):
    """Nodes could not be reached: try again later."""


class _Refused(Exception):
    """A node refused the request for good (a 4xx other than 409/429)."""


class InvalidationReconciler(Service):
    """Runs CacheInvalidations (the only writer of their status)."""

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        body = await self._kube.get(CACHEINVALIDATIONS, namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return Outcome()
        try:
            invalidation = CacheInvalidation.model_validate(body)
        except ValidationError as error:
            if (body.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return Outcome()
            return await self._invalid(body, error)
        if finished(invalidation):
            return Outcome()
        now = self._clock()
        cache_body = await self._kube.get(
            SEMANTICCACHES, namespace, invalidation.spec.cache_ref.name
        )
        if cache_body is None:
            return await self._fail(
                body,
                invalidation,
                invalidation.status,
                "CacheNotFound",
                f"SemanticCache {invalidation.spec.cache_ref.name} not found in {namespace}",
            )
        cache = SemanticCache.model_validate(cache_body)
        status = invalidation.status
        if status.phase != "Running":
            try:
                namespaces = target_namespaces(invalidation, cache)
            except ScopeError as error:
                return await self._fail(body, invalidation, status, error.reason, str(error))
            status = running_status(invalidation, namespaces, now=now)
            await self._write(namespace, name, status)
            log.info("invalidation_started", namespace=namespace, name=name, scope=namespaces)
        key = await self._access.admin_key(cache)
        if not key.usable:
            return await self._fail(body, invalidation, status, "NoAdminKey", key.problem)
        urls = await self._access.endpoints(cache)
        request = node_request(invalidation.spec.scope)
        shared_vectors = cache.spec.semantic_tier.embedded is None
        try:
            for result in list(status.namespaces):
                if result.done:
                    continue
                resumed = result.matched is not None
                if not invalidation.spec.dry_run and result.matched is None:
                    answers = await self._call(
                        urls, result.cache_namespace, request, key.value, True
                    )
                    matched = combine(
                        answers, result.cache_namespace, shared_vectors=shared_vectors
                    )
                    status = namespace_status(status, result.cache_namespace, matched=matched)
                    await self._write(namespace, name, status)
                answers = await self._call(
                    urls, result.cache_namespace, request, key.value, invalidation.spec.dry_run
                )
                removed = combine(answers, result.cache_namespace, shared_vectors=shared_vectors)
                status = namespace_status(
                    status, result.cache_namespace, removed=removed, resumed=resumed
                )
                await self._write(namespace, name, status)
        except _Refused as error:
            return await self._fail(body, invalidation, status, "Refused", str(error))
        except _Retry as error:
            started = status.start_time or now
            if (now - started).total_seconds() >= self._config.purge_timeout:
                return await self._fail(
                    body,
                    invalidation,
                    status,
                    "NodesUnreachable",
                    f"gave up after {self._config.purge_timeout:.0f}s: {error}",
                )
            status = running_status(
                invalidation, [], now=now, message=f"retrying: {error}", status=status
            )
            await self._write(namespace, name, status)
            await self._events.post_error_once(object_reference(body), "Retrying", str(error))
            return Outcome(failure="NodesUnreachable")
        done, event = completed_status(invalidation, status, now=self._clock())
        await self._write(namespace, name, done)
        await self._audit(body, cache_body, event)
        removed_total = done.removed or RemovedCounts()
        if invalidation.spec.dry_run:
            self._metrics.invalidations.labels("dry_run").inc()
        else:
            self._metrics.invalidations.labels("succeeded").inc()
            self._metrics.purged_entries.labels("invalidation").inc(removed_total.store)
        log.info("invalidation_done", namespace=namespace, name=name, message=done.message)
        return Outcome()

    async def _call(
        self,
        urls: Sequence[str],
        cache_namespace: str,
        request: InvalidateRequest,
        api_key: str | None,
        dry_run: bool,
    ) -> list[InvalidateResult]:
        """Every node that answers (shared tiers: the first removes; Milvus Lite: each its own)."""
        if not urls:
            raise _Retry("no cache node endpoint")
        answers: list[InvalidateResult] = []
        body = request.model_copy(update={"namespace": cache_namespace, "dry_run": dry_run})
        errors: list[str] = []
        for url in urls:
            try:
                answers.append(
                    await self._nodes.invalidate(url, body, api_key=api_key, time_limit=60.0)
                )
            except NodeError as error:
                if (
                    error.status is not None
                    and 400 <= error.status < 500
                    and error.status
                    not in (
                        409,
                        429,
                    )
                ):
                    raise _Refused(str(error)) from error
                errors.append(str(error))
        if not answers:
            raise _Retry(errors[-1] if errors else "no node answered")
        return answers

    async def _write(self, namespace: str, name: str, status: CacheInvalidationStatus) -> None:
        try:
            await self._kube.apply_status(
                CACHEINVALIDATIONS, namespace, name, status.to_api(), field_manager=FIELD_MANAGER
            )
        except ApiError:
            self._metrics.status_writes.labels("CacheInvalidation", "failed").inc()
            raise
        self._metrics.status_writes.labels("CacheInvalidation", "written").inc()

    async def _audit(
        self, body: Mapping[str, Any], cache_body: Mapping[str, Any] | None, event: EventSpec
    ) -> None:
        await self._events.post(object_reference(body), event)
        if cache_body is not None:
            name = body.get("metadata", {}).get("name")
            await self._events.post(
                object_reference(cache_body),
                EventSpec(
                    event.type, "CacheInvalidation", f"CacheInvalidation {name}: {event.message}"
                ),
            )

    async def _fail(
        self,
        body: Mapping[str, Any],
        invalidation: CacheInvalidation,
        status: CacheInvalidationStatus,
        reason: str,
        message: str,
    ) -> Outcome:
        metadata = body.get("metadata", {})
        failed, event = failed_status(invalidation, status, reason, message, now=self._clock())
        await self._write(metadata["namespace"], metadata["name"], failed)
        cache_body = await self._kube.get(
            SEMANTICCACHES, metadata["namespace"], invalidation.spec.cache_ref.name
        )
        await self._audit(body, cache_body, event)
        self._metrics.invalidations.labels("failed").inc()
        return Outcome()

    async def _invalid(self, body: Mapping[str, Any], error: ValidationError) -> Outcome:
        """A stored object the model rejects (the CRD should have): Failed, once."""
        metadata = body.get("metadata", {})
        message = invalid_message(error)
        now = self._clock().astimezone(UTC).replace(microsecond=0).isoformat()
        await self._kube.apply_status(
            CACHEINVALIDATIONS,
            metadata["namespace"],
            metadata["name"],
            {
                "observedGeneration": int(metadata.get("generation") or 0),
                "phase": "Failed",
                "message": message,
                "completionTime": now,
            },
            field_manager=FIELD_MANAGER,
        )
        await self._events.post(
            object_reference(body), EventSpec("Warning", "InvalidationFailed", message)
        )
        return Outcome()
