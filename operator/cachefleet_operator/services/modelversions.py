"""One reconcile pass of a ModelVersion: validate, resolve the active cache namespace, status.

The caches that depend on it are re-reconciled by the ModelVersion watch handler when the
`status.cacheNamespace` written here comes back (kopf index ModelVersion → SemanticCaches), so
nobody patches a SemanticCache. Issue 5's rollover policies plug in at `active_namespace`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError

from cachefleet_operator.adapters.kube import MODELVERSIONS, ApiError, KubeClient
from cachefleet_operator.adapters.metrics import OperatorMetrics
from cachefleet_operator.api.v1alpha1 import ModelVersion
from cachefleet_operator.api.v1alpha1.modelversion import ModelVersionStatus
from cachefleet_operator.domain.conditions import ConditionUpdate, merge_conditions
from cachefleet_operator.domain.naming import cache_namespace
from cachefleet_operator.domain.render import FIELD_MANAGER
from cachefleet_operator.domain.status import EventSpec, model_version_status, status_differs
from cachefleet_operator.services.events import EventRecorder, object_reference
from cachefleet_operator.services.semanticcaches import Outcome

__all__ = ["ModelVersionReconciler", "active_namespace"]

log = structlog.get_logger("cachefleet.modelversion")


def active_namespace(model_version: ModelVersion) -> str:
    """The cache namespace the ModelVersion should serve now: the one its identity derives.

    (Rollover with retention, Flush and Keep — issue 5 — decide here when to switch.)
    """
    return cache_namespace(model_version.metadata.name, model_version.spec)


class ModelVersionReconciler:
    """Writes ModelVersion status (the only writer of it)."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        events: EventRecorder,
        metrics: OperatorMetrics,
        resync_interval: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._kube = kube
        self._events = events
        self._metrics = metrics
        self._resync = resync_interval
        self._clock = clock

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        body = await self._kube.get(MODELVERSIONS, namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return Outcome()
        try:
            model_version = ModelVersion.model_validate(body)
        except ValidationError as error:
            await self._invalid(body, error)
            return Outcome(retry=True, ready="False")
        new_namespace = active_namespace(model_version)
        old_namespace = model_version.status.cache_namespace
        status = model_version_status(model_version, new_namespace, now=self._clock())
        if status_differs(model_version.status, status):
            try:
                await self._kube.apply_status(
                    MODELVERSIONS, namespace, name, status.to_api(), field_manager=FIELD_MANAGER
                )
            except ApiError:
                self._metrics.status_writes.labels("ModelVersion", "failed").inc()
                raise
            self._metrics.status_writes.labels("ModelVersion", "written").inc()
        if old_namespace != new_namespace:
            message = (
                f"cache namespace {new_namespace}"
                if old_namespace is None
                else f"cache namespace {old_namespace} -> {new_namespace}"
            )
            reason = "Resolved" if old_namespace is None else "CacheNamespaceChanged"
            await self._events.post(object_reference(body), EventSpec("Normal", reason, message))
        return Outcome(requeue_after=self._resync, ready="True")

    async def _invalid(self, body: Mapping[str, Any], error: ValidationError) -> None:
        metadata = body.get("metadata", {})
        message = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
        )[:2000]
        try:
            existing = ModelVersionStatus.model_validate(body.get("status") or {}).conditions
        except ValidationError:
            existing = []
        generation = int(metadata.get("generation") or 0)
        conditions = merge_conditions(
            existing,
            [
                ConditionUpdate("Ready", "False", "InvalidSpec", message),
                ConditionUpdate("Resolved", "False", "InvalidSpec", message),
            ],
            generation=generation,
            now=self._clock(),
        )
        await self._kube.apply_status(
            MODELVERSIONS,
            metadata["namespace"],
            metadata["name"],
            {
                "observedGeneration": generation,
                "conditions": [condition.to_api() for condition in conditions],
            },
            field_manager=FIELD_MANAGER,
        )
        await self._events.post_error_once(object_reference(body), "InvalidSpec", message)
