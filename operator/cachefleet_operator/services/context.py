"""What the reconciler services share: one `ServiceContext` per operator process (clients,
recorders, settings, clocks), the `Service` base that holds it, and a pass's `Outcome`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from cachefleet_operator.adapters.kube import KubeClient, ResourceType
from cachefleet_operator.adapters.metrics import OperatorMetrics
from cachefleet_operator.adapters.nodes import NodeClient
from cachefleet_operator.api.v1alpha1 import ModelVersionStatus, SemanticCacheStatus
from cachefleet_operator.domain.conditions import ConditionUpdate, merge_conditions
from cachefleet_operator.domain.render import FIELD_MANAGER
from cachefleet_operator.services.events import EventRecorder, object_reference
from cachefleet_operator.services.nodeaccess import NodeAccess
from cachefleet_operator.settings import OperatorConfig

__all__ = ["Outcome", "Service", "ServiceContext", "invalid_message"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ServiceContext:
    """The clients, recorders and settings every reconciler service works with."""

    kube: KubeClient
    nodes: NodeClient
    access: NodeAccess
    events: EventRecorder
    metrics: OperatorMetrics
    config: OperatorConfig
    clock: Callable[[], datetime] = _utc_now
    monotonic: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class Outcome:
    """How a pass ended: when to look again, and, for a pass that could not do its work, why
    (the controller then retries it with the object's exponential backoff)."""

    requeue_after: float | None = None
    failure: str | None = None
    ready: str | None = None

    @property
    def retry(self) -> bool:
        return self.failure is not None


def invalid_message(error: ValidationError) -> str:
    """Why the models reject a stored object, for its status and Events."""
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
    )[:2000]


class Service:
    """Base of the reconciler services: the shared context as attributes."""

    def __init__(self, context: ServiceContext) -> None:
        self._kube = context.kube
        self._nodes = context.nodes
        self._access = context.access
        self._events = context.events
        self._metrics = context.metrics
        self._config = context.config
        self._clock = context.clock
        self._monotonic = context.monotonic

    async def _stall_invalid(
        self,
        resource: ResourceType,
        body: Mapping[str, Any],
        error: ValidationError,
        status: type[ModelVersionStatus] | type[SemanticCacheStatus],
        conditions: Callable[[str], Sequence[ConditionUpdate]],
    ) -> Outcome:
        """A stored object the models reject (the CRD should have): its `conditions` say why
        (merged into the ones its `status` had), with one `InvalidSpec` Event; the pass failed."""
        metadata = body.get("metadata", {})
        message = invalid_message(error)
        try:
            existing = status.model_validate(body.get("status") or {}).conditions
        except ValidationError:
            existing = []
        generation = int(metadata.get("generation") or 0)
        merged = merge_conditions(
            existing, conditions(message), generation=generation, now=self._clock()
        )
        await self._kube.apply_status(
            resource,
            metadata["namespace"],
            metadata["name"],
            {
                "observedGeneration": generation,
                "conditions": [condition.to_api() for condition in merged],
            },
            field_manager=FIELD_MANAGER,
        )
        await self._events.post_error_once(object_reference(body), "InvalidSpec", message)
        return Outcome(failure="InvalidSpec", ready="False")
