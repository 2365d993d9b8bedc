"""One reconcile pass of a ModelVersion: validate, decide its cache namespace under its own
policy (`domain.lifecycle.modelversion.plan_model_version`), write status, post an Event for
a change.

The caches that depend on it are re-reconciled by the ModelVersion watch handler (kopf index
ModelVersion → SemanticCaches) when its spec or `status.cacheNamespace` changes; each cache
runs the rollover on its own nodes with the policy in force there. Nobody patches a
SemanticCache.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from pydantic import ValidationError

from cachefleet_operator.adapters.kube import MODELVERSIONS, ApiError
from cachefleet_operator.api.v1alpha1 import ModelVersion
from cachefleet_operator.api.v1alpha1.modelversion import ModelVersionStatus
from cachefleet_operator.domain.lifecycle.modelversion import Transition, plan_model_version
from cachefleet_operator.domain.render import FIELD_MANAGER
from cachefleet_operator.domain.status import (
    invalid_model_version_conditions,
    model_version_status,
    status_differs,
)
from cachefleet_operator.services.context import Outcome, Service
from cachefleet_operator.services.events import object_reference

__all__ = ["ModelVersionReconciler", "active_namespace"]

log = structlog.get_logger("cachefleet.modelversion")


def active_namespace(model_version: ModelVersion, *, now: datetime | None = None) -> str:
    """The cache namespace the ModelVersion is served from under its own policy."""
    return plan_model_version(model_version, now=now or datetime.now(UTC)).cache_namespace


class ModelVersionReconciler(Service):
    """Writes ModelVersion status (the only writer of it)."""

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        body = await self._kube.get(MODELVERSIONS, namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return Outcome()
        try:
            model_version = ModelVersion.model_validate(body)
        except ValidationError as error:
            return await self._stall_invalid(
                MODELVERSIONS, body, error, ModelVersionStatus, invalid_model_version_conditions
            )
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
        requeue = self._config.resync_interval
        if plan.next_due is not None:  # a retained namespace's retention ends: drop it then
            requeue = min(requeue, max(1.0, (plan.next_due - now).total_seconds() + 0.5))
        return Outcome(requeue_after=requeue, ready="True")
