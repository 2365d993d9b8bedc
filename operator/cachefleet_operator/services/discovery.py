"""Which URLs a fleet's cache nodes answer on."""

from __future__ import annotations

import structlog

from cachefleet_operator.adapters.kube import ENDPOINTSLICES, KubeClient
from cachefleet_operator.domain.endpoints import (
    SERVICE_NAME_LABEL,
    annotation_endpoints,
    endpoint_slice_urls,
)

__all__ = ["NodeDiscovery"]

log = structlog.get_logger("cachefleet.discovery")


class NodeDiscovery:
    """Ready endpoints of the node Service's EndpointSlices (pod IP and the `http` port).

    With `from_annotation` (test/dev only) the `cachefleet.io/node-endpoints` annotation is the
    only source: EndpointSlices are not read, so nothing is sent to pod IPs that do not exist
    (kwok's fake pods).
    """

    def __init__(self, kube: KubeClient, *, from_annotation: bool) -> None:
        self._kube = kube
        self.from_annotation = from_annotation

    async def endpoints(self, namespace: str, service: str, annotation: str | None) -> list[str]:
        if self.from_annotation:
            try:
                return annotation_endpoints(annotation)
            except ValueError as error:
                log.warning("bad_endpoints_annotation", namespace=namespace, error=str(error))
                return []
        slices = await self._kube.list(
            ENDPOINTSLICES, namespace, label_selector=f"{SERVICE_NAME_LABEL}={service}"
        )
        return endpoint_slice_urls(slices)
