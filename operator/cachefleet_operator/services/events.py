"""Kubernetes Events about the operator's objects (failures to post are logged, never raised)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from cachefleet_operator.adapters.kube import ApiError, KubeClient
from cachefleet_operator.adapters.metrics import OperatorMetrics
from cachefleet_operator.domain.render import FIELD_MANAGER
from cachefleet_operator.domain.status import EventSpec

__all__ = ["EventRecorder", "object_reference"]

log = structlog.get_logger("cachefleet.events")


def object_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an object an Event needs to point at it."""
    metadata = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "uid": metadata.get("uid"),
        },
    }


class EventRecorder:
    """Posts Events; remembers the last error Event per object so a retry loop posts it once."""

    def __init__(self, kube: KubeClient, metrics: OperatorMetrics) -> None:
        self._kube = kube
        self._metrics = metrics
        self._last_error: dict[tuple[str, str, str], str] = {}

    async def post(self, involved: Mapping[str, Any], event: EventSpec) -> None:
        try:
            await self._kube.post_event(
                involved,
                type=event.type,
                reason=event.reason,
                message=event.message,
                component=FIELD_MANAGER,
            )
        except ApiError as error:
            log.warning("event_not_posted", reason=event.reason, error=str(error))
            return
        self._metrics.events.labels(event.type).inc()
        metadata = involved.get("metadata", {})
        log.info(
            "event",
            kind=involved.get("kind"),
            namespace=metadata.get("namespace"),
            name=metadata.get("name"),
            type=event.type,
            reason=event.reason,
            message=event.message,
        )

    async def post_error_once(self, involved: Mapping[str, Any], reason: str, message: str) -> None:
        """A Warning for a failed pass, unless the same message was the last one posted."""
        metadata = involved.get("metadata", {})
        key = (str(involved.get("kind")), str(metadata.get("namespace")), str(metadata.get("name")))
        if self._last_error.get(key) == message:
            return
        self._last_error[key] = message
        await self.post(involved, EventSpec("Warning", reason, message))

    def clear_error(self, kind: str, namespace: str, name: str) -> None:
        """The object's last pass succeeded: the next failure is news again."""
        self._last_error.pop((kind, namespace, name), None)
