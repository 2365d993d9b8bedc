"""One reconcile pass of a ModelVersion: validate, decide its cache namespace under its own
policy (`domain.rollover.plan_model_version`), write status, post an Event for a change.

The caches that depend on it are re-reconciled by the ModelVersion watch handler (kopf index
ModelVersion → SemanticCaches) when its spec or `status.cacheNamespace` changes; each cache
runs the rollover on its own nodes with the policy in force there. Nobody patches a
SemanticCache.
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
from cachefleet_operator.domain.conditions import merge_conditions
from cachefleet_operator.domain.render import FIELD_MANAGER
from cachefleet_operator.domain.rollover import Transition, plan_model_version
from cachefleet_operator.domain.status import (
    invalid_model_version_conditions,
    model_version_status,
    status_differs,
)
from cachefleet_operator.services.events import EventRecorder, object_reference
from cachefleet_operator.services.semanticcaches import Outcome

__all__ = ["ModelVersionReconciler", "active_namespace"]

log = structlog.get_logger("cachefleet.modelversion")


def active_namespace(model_version: ModelVersion, *, now: datetime | None = None) -> str:
    """The cache namespace the ModelVersion is served from under its own policy."""
    return plan_model_version(model_version, now=now or datetime.now(UTC)).cache_namespace


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
            return Outcome(failure="InvalidSpec", ready="False")
        now = self._clock()
        plan = plan_model_version(model_version, now=now)
        status = model_version_status(model_version, plan, now=now)
        if status_differs(model_version.status, status):
            try:
                await self._kube.apply_status(
                    MODELVERSIONS, namespace, name, status.to_api(), field_manager=FIELD_MANAGER
                )
            except ApiError:
                self._metrics.status_writes.labels("ModelVersion", "failed").inc()
                raise
            self._metrics.status_writes.labels("ModelVersion", "written").inc()
        if plan.event is not None and plan.transition != Transition.UNCHANGED:
            await self._events.post(object_reference(body), plan.event)
        requeue = self._resync
        if plan.next_due is not None:  # a retained namespace's retention ends: drop it then
            requeue = min(requeue, max(1.0, (plan.next_due - now).total_seconds() + 0.5))
        return Outcome(requeue_after=requeue, ready="True")

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
            invalid_model_version_conditions(message),
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
